"""Photos deleted before deletion reached files kept their original and face crop. Give them the
treatment a deletion gives now (privacy.services.withdrawal.tombstone_photos): queue both files for
deletion (the privacy sweep, or `manage.py privacy_check --fix`, deletes them) and empty the fields
that describe the person. Their rows, votes and points stay, as for any deleted photo."""
from django.db import migrations
from django.db.models import Q


def tombstone_deleted_photos(apps, schema_editor):
    Photo = apps.get_model("labeling", "Photo")
    PendingFileDeletion = apps.get_model("privacy", "PendingFileDeletion")
    deleted = Photo.objects.filter(status="deleted").filter(~Q(image="") | ~Q(face_image=""))
    rows = []
    for pk, image, face in deleted.values_list("pk", "image", "face_image").iterator(chunk_size=2000):
        if image:
            rows.append(PendingFileDeletion(store="private", name=image, reason=f"photo {pk} deleted earlier"))
        if face:
            rows.append(PendingFileDeletion(store="media", name=face, reason=f"photo {pk} deleted earlier"))
    PendingFileDeletion.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
    deleted.update(image="", face_image="", face={}, width=0, height=0, date_taken=None, show_real_age=False,
                   consent=False, consent_export=False, consent_training=False, predicted_apparent_age=None,
                   predicted_real_age=None, predicted_by=None)


class Migration(migrations.Migration):

    dependencies = [
        ("privacy", "0001_initial"),
        ("labeling", "0006_private_originals"),
    ]

    operations = [
        migrations.RunPython(tombstone_deleted_photos, migrations.RunPython.noop),
    ]
