"""The rater-aware crowd (issue 15, docs/crowd.md): what the rater fit writes per photo (the
estimate and its SE, the need level, the vote budget until the next fit, retirement) and per player
(RaterEstimate), its log (RaterFitRun), gold photos, and the next-photo read's partial indexes over
the voting pool (replacing photo_next_idx, which the read no longer uses).

New columns have database defaults, so rows inserted by raw SQL (COPY) are valid: a photo the fit
has not seen is at the neediest level with the default budget of 60 votes (the hard cap).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import labeling.models


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('labeling', '0006_private_originals'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='RaterEstimate',
            fields=[
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='rater_estimate', serialize=False, to=settings.AUTH_USER_MODEL)),
                ('n_votes', models.PositiveIntegerField(default=0)),
                ('bias', models.FloatField()),
                ('bias_se', models.FloatField()),
                ('band_bias', models.JSONField(default=list)),
                ('band_bias_se', models.JSONField(default=list)),
                ('band_votes', models.JSONField(default=list)),
                ('noise', models.FloatField()),
                ('noise_se', models.FloatField()),
                ('fitted_at', models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name='RaterFitRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='running', max_length=10)),
                ('trigger', models.CharField(blank=True, default='', max_length=32)),
                ('started_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('duration_s', models.FloatField(blank=True, null=True)),
                ('votes', models.PositiveIntegerField(default=0)),
                ('photos', models.PositiveIntegerField(default=0)),
                ('raters', models.PositiveIntegerField(default=0)),
                ('gold_photos', models.PositiveIntegerField(default=0)),
                ('max_vote_id', models.BigIntegerField(default=0)),
                ('iterations', models.PositiveIntegerField(default=0)),
                ('converged', models.BooleanField(default=False)),
                ('photos_updated', models.PositiveIntegerField(default=0)),
                ('photos_unchanged', models.PositiveIntegerField(default=0)),
                ('photos_skipped', models.PositiveIntegerField(default=0)),
                ('photos_retired', models.PositiveIntegerField(default=0)),
                ('population', models.JSONField(blank=True, default=dict)),
                ('timings', models.JSONField(blank=True, default=dict)),
                ('error', models.TextField(blank=True, default='')),
            ],
            options={
                'ordering': ['-started_at', '-pk'],
            },
        ),
        migrations.RemoveIndex(
            model_name='photo',
            name='photo_next_idx',
        ),
        migrations.AddField(
            model_name='photo',
            name='crowd_estimate',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='photo',
            name='crowd_se',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='photo',
            name='crowd_votes',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='photo',
            name='gold_age',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='photo',
            name='is_gold',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='photo',
            name='need_level',
            field=models.SmallIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='photo',
            name='pool_until_votes',
            field=models.PositiveIntegerField(db_default=60, default=labeling.models.default_pool_budget),
        ),
        migrations.AddField(
            model_name='photo',
            name='retired_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='photo',
            index=models.Index(condition=models.Q(('is_gold', False), ('n_votes__lt', models.F('pool_until_votes')), ('retired_at__isnull', True), ('status', 'active')), fields=['need_level', 'shuffle_key'], name='photo_pool_level_idx'),
        ),
        migrations.AddIndex(
            model_name='photo',
            index=models.Index(condition=models.Q(('is_gold', False), ('n_votes__lt', models.F('pool_until_votes')), ('retired_at__isnull', True), ('status', 'active')), fields=['shuffle_key'], name='photo_pool_key_idx'),
        ),
        migrations.AddIndex(
            model_name='photo',
            index=models.Index(condition=models.Q(('is_gold', True), ('status', 'active')), fields=['shuffle_key'], name='photo_gold_key_idx'),
        ),
        migrations.AddConstraint(
            model_name='raterfitrun',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'running')), fields=('status',), name='one_running_rater_fit'),
        ),
        migrations.AddField(
            model_name='raterestimate',
            name='fit',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='labeling.raterfitrun'),
        ),
    ]
