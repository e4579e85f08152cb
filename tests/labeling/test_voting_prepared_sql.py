"""The game's fixed SQL (appareal_site.db): prepared on PostgreSQL, plain elsewhere, same answers."""
import pytest
from django.db import IntegrityError, connection, transaction

from appareal_site import db
from labeling.models import Vote
from labeling.services.votes import cast_vote
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db

SQL = "SELECT id, voter_id FROM labeling_vote WHERE photo_id = %s ORDER BY id"


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0}


def test_same_rows_prepared_or_not(settings):
    photo = make_photo()
    voter = make_user()
    cast_vote(voter=voter, photo_id=photo.pk, age=30)
    prepared = db.fetch(SQL, [photo.pk])
    settings.APPAREAL_PREPARED_SQL = False
    assert db.fetch(SQL, [photo.pk]) == prepared == [(Vote.objects.get().pk, voter.pk)]


def test_prepared_on_postgresql_and_errors_are_djangos():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature (CI runs this on PostgreSQL)")
    photo = make_photo()
    db.fetch(SQL, [photo.pk])
    statements = [s for (s,) in db.fetch("SELECT statement FROM pg_prepared_statements", [])]
    assert SQL.replace("%s", "$1") in statements
    vote = Vote.objects.create(photo=photo, voter=make_user(), age=30)
    with pytest.raises(IntegrityError), transaction.atomic():
        db.execute(
            "INSERT INTO labeling_vote (photo_id, voter_id, age, voter_kind, kept, created_at) "
            "VALUES (%s, %s, 40, 'human', TRUE, NOW())",
            [photo.pk, vote.voter_id],
        )


def test_kept_cursor_still_works_after_a_failed_statement():
    if connection.vendor != "postgresql":
        pytest.skip("the kept cursor is part of the PostgreSQL prepared path (CI runs this on PostgreSQL)")
    photo = make_photo()
    assert db.fetch(SQL, [photo.pk]) == []
    with pytest.raises(IntegrityError), transaction.atomic():
        db.execute("INSERT INTO labeling_vote (photo_id, voter_id, age, voter_kind, kept, created_at) "
                   "VALUES (%s, %s, 400, 'human', TRUE, NOW())", [photo.pk, photo.owner_id])
    assert db.fetch(SQL, [photo.pk]) == []  # same cursor, after the failed statement
