"""The database function `labeling_cast_vote` (PostgreSQL) against the Python path and its pure
cores: random vote sequences are played in lockstep on two photos, one through each path, by two
mirrored crowds (same kinds, same ages), and every answer and every stored row must be the same.

The function exists only on PostgreSQL. Without it (SQLite in plain `make test`) the part that can
run still runs: the same sequences through the Python path, checked against a full recomputation
by the pure cores (`recompute_consensus --check`, `rebuild_ledger --check`); the terminal summary
then says loudly that the database function was not checked (tests/conftest.py)."""
import random
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from labeling import consensus, scoring
from labeling.consensus import ConsensusRule, compute_consensus
from labeling.models import Photo, PlayerKind, PlayerProfile, Vote
from labeling.services.votes import VoteRejected, cast_vote
from leaderboard.models import PlayerTotal, PlayerWeekTotal, PointsAward
from leaderboard.services.awards import award_upload_points, week_of
from tests.factories import make_photo, make_user

pytestmark = [pytest.mark.django_db]

KINDS = [PlayerKind.HUMAN] * 5 + [PlayerKind.SIMULATED, PlayerKind.IMPORTED, PlayerKind.MODEL, PlayerKind.MODEL]

# (OUTLIER_MIN_VOTES, OUTLIER_MAD_K, OUTLIER_MIN_YEARS, SCORING_MIN_OTHER_VOTES): the defaults, and
# rules that drop much more (MAD k 1, no minimum), score early or late, or never drop.
RULES = [(5, 3.0, 5.0, 5), (3, 1.0, 0.0, 2), (4, 2.0, 2.5, 3), (7, 0.5, 1.0, 6), (1, 1.4826, 0.0, 1), (50, 3.0, 5.0, 4)]


NO_FUNCTION = "labeling_cast_vote is a PostgreSQL function: set DATABASE_URL=postgres://... (CI does)"


def _paths() -> tuple[bool, ...]:
    """The vote paths to play: the database function (True) and the Python path (False)."""
    return (True, False) if connection.vendor == "postgresql" else (False,)


def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(NO_FUNCTION)


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0}


def _ages(rng: random.Random, n: int) -> list[int]:
    """A crowd around a centre with ties, outliers at both ends and the range limits."""
    centre = rng.randint(3, 97)
    spread = rng.choice([0, 1, 2, 4, 8, 15])
    ages = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.12:
            ages.append(rng.choice([0, 100, rng.randint(0, 100)]))
        elif roll < 0.25 and ages:
            ages.append(rng.choice(ages))  # ties
        else:
            ages.append(min(100, max(0, centre + rng.randint(-spread, spread))))
    return ages


def _answer(outcome_or_error, ids: dict[int, int], positions: dict[int, int]):
    """A vote's answer with players and votes named by their index (comparable across crowds)."""
    if isinstance(outcome_or_error, VoteRejected):
        return type(outcome_or_error).__name__, outcome_or_error.status_code, outcome_or_error.message
    o = outcome_or_error
    positions.setdefault(o.vote.pk, len(positions))
    p = o.photo
    return (
        o.vote.age, o.vote.kept, o.vote.voter_kind, o.points, o.pending, o.votes_needed, o.earns_points,
        (p.n_votes, p.n_kept, p.apparent_age, p.apparent_age_std, p.apparent_age_se),
        p.real_age, p.show_real_age, p.predicted_apparent_age,
        sorted((ids[a.user_id], positions[a.vote_id], a.points, a.scored_against, a.awarded_at == o.vote.created_at, a.week)
               for a in o.awards),
    )


def _stored(photo: Photo, ids: dict[int, int]):
    """Everything a photo's votes wrote: votes, consensus cache, ledger rows (by vote position)."""
    photo.refresh_from_db()
    votes = list(Vote.objects.filter(photo=photo).order_by("id"))
    position = {v.pk: i for i, v in enumerate(votes)}
    by_time = {v.created_at: i for i, v in enumerate(votes)}  # awards are dated by their trigger vote
    awards = sorted(
        (ids[a.user_id], position[a.vote_id], a.points, a.scored_against, by_time[a.awarded_at], a.week == week_of(a.awarded_at))
        for a in PointsAward.objects.filter(photo=photo, reason="vote")
    )
    return (
        [(ids[v.voter_id], v.age, v.voter_kind, v.kept) for v in votes],
        (photo.n_votes, photo.n_kept, photo.apparent_age, photo.apparent_age_std, photo.apparent_age_se),
        awards,
    )


def _crowd(kinds):
    return [make_user(kind=kind) for kind in kinds]


@pytest.mark.parametrize("seed", range(12))
def test_function_and_python_path_agree_on_random_sequences(settings, seed):
    """On PostgreSQL: both paths in lockstep. Elsewhere: the Python path against the pure cores."""
    _play_and_compare(settings, seed)


@pytest.mark.parametrize("seed", range(3))
def test_a_rule_changed_in_python_changes_both_paths(settings, monkeypatch, seed):
    """Each rule is one edit in Python: another points table (within 2 years: 8 points, beyond 10:
    none), another MAD scale and the imported raters' votes not counting, and the database function
    follows, in lockstep with the Python path."""
    monkeypatch.setattr(scoring, "POINTS_TABLE", ((1.0, False, 10), (2.0, True, 8), (5.0, True, 5), (10.0, True, 2)))
    monkeypatch.setattr(scoring, "POINTS_OTHERWISE", 0)
    monkeypatch.setattr(scoring, "NON_COUNTING_KINDS", frozenset({"model", "imported"}))
    monkeypatch.setattr(consensus, "MAD_TO_SIGMA", 1.0)
    _play_and_compare(settings, 100 + seed, counting=lambda kind: kind not in ("model", "imported"))

    for path in _paths():
        settings.APPAREAL_VOTE_FUNCTION = path
        photo = make_photo(make_user())
        for age in (30, 30, 30, 30, 30):
            cast_vote(voter=make_user(), photo_id=photo.pk, age=age)
        assert cast_vote(voter=make_user(), photo_id=photo.pk, age=32).points == 8, path
        assert cast_vote(voter=make_user(), photo_id=photo.pk, age=99).points == 0, path
        imported = cast_vote(voter=make_user(kind=PlayerKind.IMPORTED), photo_id=photo.pk, age=90)
        assert imported.photo.n_votes == 7 and not imported.vote.kept, path  # did not count


def _play_and_compare(settings, seed, counting=lambda kind: kind != PlayerKind.MODEL):
    rng = random.Random(seed)
    min_votes, mad_k, min_years, min_others = RULES[seed % len(RULES)]
    settings.APPAREAL = {
        **settings.APPAREAL,
        "OUTLIER_MIN_VOTES": min_votes, "OUTLIER_MAD_K": mad_k, "OUTLIER_MIN_YEARS": min_years,
        "SCORING_MIN_OTHER_VOTES": min_others, "OUTLIER_FLAG_WINDOW": 2, "OUTLIER_FLAG_SHARE": 0.4,
    }
    kinds = [rng.choice(KINDS) for _ in range(rng.randint(4, 28))]
    crowds = {path: _crowd(kinds) for path in _paths()}  # True: the database function
    owners = {path: make_user() for path in crowds}
    extra = rng.choice([None, 40.5])
    real = rng.randint(0, 100)
    shown = rng.random() < 0.5
    photos = {path: [make_photo(owners[path], real_age=real, show_real_age=shown, predicted_apparent_age=extra) for _ in range(2)]
              for path in crowds}
    for made in photos.values():
        for photo in made:
            award_upload_points(photo)  # as the upload service does (rebuild_ledger expects it)
    ids = {path: {u.pk: i for i, u in enumerate([*crowds[path], owners[path]])} for path in crowds}
    positions = {(path, n): {} for path in crowds for n in range(2)}

    # Each crowd votes on its two photos in the same random order; some players vote twice and
    # the owner tries too (403, 409 and 404 write nothing on both paths).
    steps = []
    for n in range(2):
        order = list(range(len(kinds)))
        rng.shuffle(order)
        for voter, age in zip(order, _ages(rng, len(order))):
            steps.append((n, voter, age))
            if rng.random() < 0.08:
                steps.append((n, voter, rng.randint(0, 100)))
            if rng.random() < 0.05:
                steps.append((n, len(kinds), 30))  # the owner
    rng.shuffle(steps)
    for n, voter, age in steps:
        answers = {}
        for path in _paths():
            settings.APPAREAL_VOTE_FUNCTION = path
            players = [*crowds[path], owners[path]]
            try:
                outcome = cast_vote(voter=players[voter], photo_id=photos[path][n].pk, age=age)
            except VoteRejected as rejected:
                outcome = rejected
            answers[path] = _answer(outcome, ids[path], positions[(path, n)])
        assert all(answer == answers[False] for answer in answers.values()), (n, voter, age)

    for n in range(2):
        rows = {path: _stored(photos[path][n], ids[path]) for path in _paths()}
        assert rows.get(True, rows[False]) == rows[False]
        # and the cache is the pure core's consensus of the counting votes
        votes, cache, _ = rows[False]
        rule = ConsensusRule(min_votes=min_votes, mad_k=mad_k, min_years=min_years)
        expected = compute_consensus([age for _, age, kind, _ in votes if counting(kind)], rule)
        assert cache == (expected.n_votes, expected.n_kept, expected.apparent_age, expected.std, expected.se)

    for path in _paths():  # totals, weekly totals and flags of mirrored players
        players = crowds[path]
        totals = dict(PlayerTotal.objects.filter(user__in=players).values_list("user_id", "points"))
        weeks = dict(PlayerWeekTotal.objects.filter(user__in=players).values_list("user_id", "points"))
        flags = dict(PlayerProfile.objects.filter(user__in=players).values_list("user_id", "flagged_outlier"))
        crowds[path] = [(totals.get(u.pk), weeks.get(u.pk), flags[u.pk]) for u in players]
    assert crowds.get(True, crowds[False]) == crowds[False]

    out = StringIO()
    call_command("recompute_consensus", "--check", stdout=out)
    call_command("rebuild_ledger", "--dry-run", "--check", stdout=out)
    assert out.getvalue().count(" 0 difference(s)") == 2, out.getvalue()


def test_consensus_function_matches_the_pure_core_bit_for_bit():
    """labeling_consensus on many random vote lists and rules, floats compared with ==."""
    _postgres_only()
    rng = random.Random(4)
    cases = []
    for _ in range(400):
        ages = _ages(rng, rng.randint(0, 40))
        rule = ConsensusRule(min_votes=rng.randint(0 if ages else 1, 8),  # (the core has no median of nothing)
                              mad_k=rng.choice([0.5, 1.0, 2.0, 3.0, 2.7]),
                             min_years=rng.choice([0.0, 0.5, 2.0, 5.0, 7.3]))
        cases.append((ages, rule))
    with connection.cursor() as cursor:
        for ages, rule in cases:
            cursor.execute(
                "SELECT n_votes, n_kept, mean, std, se, kept FROM labeling_consensus(%s::int[], %s, %s::float8, %s::float8)",
                [ages, rule.min_votes, rule.mad_scale, rule.min_years],
            )
            got = cursor.fetchone()
            expected = compute_consensus(ages, rule)
            assert got == (expected.n_votes, expected.n_kept, expected.apparent_age, expected.std, expected.se,
                           list(expected.kept)), (ages, rule)


def test_function_writes_nothing_when_it_refuses():
    _postgres_only()
    owner, voter = make_user(), make_user()
    photo = make_photo(owner)
    cast_vote(voter=voter, photo_id=photo.pk, age=30)
    before = (Vote.objects.count(), PointsAward.objects.count(), Photo.objects.get(pk=photo.pk).n_votes)
    for who, photo_id, expected in ((owner, photo.pk, 403), (voter, photo.pk, 409), (voter, photo.pk + 99, 404),
                                    (voter, 2**63, 404), (voter, 0, 404)):
        with pytest.raises(VoteRejected) as rejected:
            cast_vote(voter=who, photo_id=photo_id, age=31)
        assert rejected.value.status_code == expected
    assert (Vote.objects.count(), PointsAward.objects.count(), Photo.objects.get(pk=photo.pk).n_votes) == before
