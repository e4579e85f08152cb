"""Seed a PostgreSQL database for the game benchmark: players, photos, votes, ledger, friendships.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/appareal_bench \
        .venv/bin/python bench/bench_game_seed.py --players 50000 --photos 100000 --votes 1000000

Refuses any database whose name does not contain "bench". Rows go in with COPY. The consensus
cache, kept flags, points ledger and totals are computed with the same pure cores the app uses
(labeling.consensus, labeling.scoring), so `recompute_consensus` and `rebuild_ledger` find nothing
to change on a freshly seeded database. Players with id in the first --token-players get an API
token derived from their id (sha1("bench-token-<id>")), which the load client recomputes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appareal_site.settings")
os.environ.setdefault("DEBUG", "1")  # development settings, as before DEBUG defaulted to off


def token_for(user_id: int) -> str:
    return hashlib.sha1(f"bench-token-{user_id}".encode()).hexdigest()


def with_defaults(model, columns: list[str]) -> tuple[list[str], tuple]:
    """`columns` plus every other NOT NULL column of the model that has a default, and those
    defaults (COPY does not apply Django's defaults; fields added later then need no change here)."""
    extra = [f for f in model._meta.concrete_fields
             if f.column not in columns and not f.null and f.has_default() and not f.primary_key]
    values = tuple(json.dumps(v) if isinstance(v, dict | list) else v for v in (f.get_default() for f in extra))
    return columns + [f.column for f in extra], values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=50_000)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--token-players", type=int, default=20_000, help="players that get an API token")
    parser.add_argument("--friends", type=int, default=10, help="friends per token player")
    parser.add_argument("--weeks", type=int, default=8, help="spread creation times over this many weeks")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from labeling.consensus import compute_consensus
    from labeling.models import Photo, PlayerProfile, Vote
    from labeling.scoring import ScoringVote, settle_scores
    from labeling.services.vote_outcomes import consensus_rule, scoring_min_others
    from leaderboard.models import Friendship, PlayerTotal, PlayerWeekTotal, PointsAward
    from leaderboard.services.awards import week_of

    name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in name:
        sys.exit(f"refusing to seed {connection.vendor} database {name!r}: use a PostgreSQL database named *bench*")

    rng = random.Random(args.seed)
    rule, min_others = consensus_rule(), scoring_min_others()
    upload_points = settings.APPAREAL["UPLOAD_POINTS"]
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(weeks=args.weeks)
    span = (now - start).total_seconds()
    t0 = time.perf_counter()

    def copy(table: str, columns: list[str], rows) -> int:
        count = 0
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out:
                for row in rows:
                    out.write_row(row)
                    count += 1
        return count

    def reset_sequence(table: str):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1)) FROM {table}")

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM labeling_vote")
        if cursor.fetchone()[0]:
            sys.exit("the database already holds votes: drop and re-create it first")
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM auth_user")
        first_user = cursor.fetchone()[0] + 1

    # Players: one shared password hash (hashing 50k passwords would dominate the seed).
    password = make_password("bench-password-not-secret")
    users = list(range(first_user, first_user + args.players))
    joined = [start + dt.timedelta(seconds=rng.random() * span * 0.2) for _ in users]
    copy(
        "auth_user",
        ["id", "password", "is_superuser", "username", "first_name", "last_name", "email", "is_staff", "is_active", "date_joined"],
        ((u, password, False, f"bench{u:06d}", "", "", f"bench{u}@example.org", False, True, j) for u, j in zip(users, joined)),
    )
    reset_sequence("auth_user")
    profile_columns, profile_defaults = with_defaults(PlayerProfile, ["user_id", "kind", "gender", "flagged_outlier"])
    copy(PlayerProfile._meta.db_table, profile_columns, ((u, "human", "", False, *profile_defaults) for u in users))
    token_users = users[: args.token_players]
    copy("authtoken_token", ["key", "created", "user_id"], ((token_for(u), now, u) for u in token_users))
    print(f"players: {len(users)} ({len(token_users)} with tokens) in {time.perf_counter() - t0:.1f} s", flush=True)

    # Photos and their votes, generated photo by photo so each photo's consensus and scores can be
    # computed right away with the app's own cores.
    counts = [0] * args.photos
    for _ in range(args.votes):
        counts[rng.randrange(args.photos)] += 1
    photo_rows, vote_rows, award_rows = [], [], []
    totals: dict[int, int] = defaultdict(int)
    week_totals: dict[tuple[int, dt.date], int] = defaultdict(int)
    vote_id = 0
    first_photo = 1
    for index in range(args.photos):
        photo_id = first_photo + index
        owner = rng.choice(users)
        real_age = rng.randint(1, 90)
        looks = real_age + rng.gauss(0, 3)
        created = start + dt.timedelta(seconds=rng.random() * span * 0.5)
        voters: set[int] = set()
        while len(voters) < counts[index]:
            voter = rng.choice(users)
            if voter != owner:
                voters.add(voter)
        voters_list = list(voters)
        rng.shuffle(voters_list)
        moments = sorted(created + dt.timedelta(seconds=rng.random() * (now - created).total_seconds() * 0.95) for _ in voters_list)
        ages = []
        for _ in voters_list:
            if rng.random() < 0.05:
                ages.append(rng.randint(0, 100))
            else:
                ages.append(min(100, max(0, round(looks + rng.gauss(0, 5)))))
        consensus = compute_consensus(ages, rule)
        ids = list(range(vote_id + 1, vote_id + 1 + len(ages)))
        vote_id += len(ages)
        for vid, voter, age, kept, moment in zip(ids, voters_list, ages, consensus.kept, moments):
            vote_rows.append((vid, photo_id, voter, age, "human", kept, moment))
        info = dict(zip(ids, zip(voters_list, moments)))
        scoring = [ScoringVote(id=i, age=a, counts=True, earns=True) for i, a in zip(ids, ages)]
        for s in settle_scores(scoring, rule=rule, min_others=min_others):
            voter, _ = info[s.vote_id]
            when = info[s.trigger_vote_id][1]
            award_rows.append((voter, "vote", s.points, photo_id, s.vote_id, s.against, when, week_of(when)))
        award_rows.append((owner, "upload", upload_points, photo_id, None, None, created, week_of(created)))
        photo_rows.append(
            (photo_id, owner, "upload", "", f"originals/bench/{photo_id}.jpg", 224, 224, f"faces/bench/{photo_id}.jpg",
             json.dumps({"box": [0, 0, 224, 224], "confidence": 1.0}), real_age, True, True, True, True, "active", False,
             created, consensus.n_votes, consensus.n_kept, consensus.apparent_age, consensus.std, consensus.se, rng.random(),
             "")
        )
        if index % 20000 == 19999:
            print(f"  generated {index + 1} photos, {vote_id} votes ({time.perf_counter() - t0:.0f} s)", flush=True)
    for user, _, points, _, _, _, _, week in award_rows:
        totals[user] += points
        week_totals[(user, week)] += points

    photo_columns, photo_defaults = with_defaults(
        Photo,
        # (The rater fit's columns take their defaults: not fitted yet, the neediest level, the
        # default budget. `manage.py fit_raters` fits them; bench_game.py runs it after seeding.)
        ["id", "owner_id", "source", "import_key", "image", "width", "height", "face_image", "face", "real_age", "consent",
         "consent_export", "consent_training", "show_real_age", "status", "is_simulated", "created_at", "n_votes", "n_kept",
         "apparent_age", "apparent_age_std", "apparent_age_se", "shuffle_key", "split"],
    )
    copy(Photo._meta.db_table, photo_columns, (row + photo_defaults for row in photo_rows))
    reset_sequence(Photo._meta.db_table)
    print(f"photos: {len(photo_rows)} in {time.perf_counter() - t0:.1f} s", flush=True)
    copy(Vote._meta.db_table, ["id", "photo_id", "voter_id", "age", "voter_kind", "kept", "created_at"], vote_rows)
    reset_sequence(Vote._meta.db_table)
    print(f"votes: {len(vote_rows)} in {time.perf_counter() - t0:.1f} s", flush=True)
    copy(
        PointsAward._meta.db_table,
        ["user_id", "reason", "points", "photo_id", "vote_id", "scored_against", "awarded_at", "week"],
        award_rows,
    )
    copy(PlayerTotal._meta.db_table, ["user_id", "points"], sorted(totals.items()))
    copy(PlayerWeekTotal._meta.db_table, ["user_id", "week", "points"], ((u, w, p) for (u, w), p in sorted(week_totals.items())))
    print(f"ledger: {len(award_rows)} awards, {len(totals)} totals, {len(week_totals)} weekly totals "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)

    pairs = set()
    for user in token_users:
        for _ in range(args.friends):
            friend = rng.choice(users)
            if friend != user:
                pairs.add((user, friend))
                pairs.add((friend, user))
    copy(Friendship._meta.db_table, ["user_id", "friend_id", "created_at"], ((a, b, now) for a, b in sorted(pairs)))
    with connection.cursor() as cursor:
        # What autovacuum would do soon after a bulk load: statistics, and the visibility map that
        # lets rank counts run as index-only scans.
        cursor.execute("VACUUM ANALYZE")
    print(f"friendships: {len(pairs) // 2}; seeded in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
