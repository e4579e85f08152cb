"""Account erasure and personal-data download on PostgreSQL, for one heavy player.

    .venv/bin/python bench/bench_privacy_erasure.py [--photos 200] [--votes 5000] [--others 20]

Creates (again) the database `appareal_bench_privacy` (BENCH_PRIVACY_DATABASE_URL overrides),
migrates it, and seeds one player with PHOTOS uploads (tiny JPEGs under /tmp/appareal_bench_privacy)
each guessed by OTHERS players, who also guess VOTES photos the player guessed too; votes are
bulk-inserted, then consensus and ledger are rebuilt so that the starting point is exact. Then times
the personal-data zip (built in-process), the erasure (in-process, all steps), and checks that
`recompute_consensus --check` and `rebuild_ledger --check` still hold.
"""
import argparse
import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_URL = os.environ.get("BENCH_PRIVACY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appareal_bench_privacy")
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/appareal_bench_privacy"))
ENV = {**os.environ, "DATABASE_URL": DB_URL, "MEDIA_ROOT": str(WORK / "media"), "PRIVATE_ROOT": str(WORK / "private"),
       "CELERY_BROKER_URL": "", "REDIS_URL": "", "DJANGO_SETTINGS_MODULE": "appareal_site.settings", "DEBUG": "0",
       "SECRET_KEY": "bench-only-secret-key-" + "x" * 40, "LOG_LEVEL": "ERROR"}


def fresh_database():
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=ENV, check=True)


def seed(n_photos: int, n_votes: int, n_others: int):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from labeling.models import PlayerProfile, Vote
    from leaderboard.services.awards import award_upload_points
    from tests.factories import make_photo

    User = get_user_model()
    alice = User.objects.create_user("alice", "alice@example.org", "bench-password-123")
    PlayerProfile.objects.create(user=alice)
    others = [User.objects.create(username=f"other{i}") for i in range(n_others)]
    PlayerProfile.objects.bulk_create([PlayerProfile(user=u) for u in others])
    hers = [make_photo(alice) for _ in range(n_photos)]
    for photo in hers:
        award_upload_points(photo)
    theirs = [make_photo(others[i % n_others]) for i in range(n_votes)]
    rng = random.Random(0)
    votes = [Vote(photo=p, voter=u, age=rng.randint(20, 40)) for p in hers for u in others[:6]]
    for photo in theirs:
        voters = [u for u in others if u.pk != photo.owner_id][:6]
        votes += [Vote(photo=photo, voter=u, age=rng.randint(20, 40)) for u in voters[:3]]
        votes.append(Vote(photo=photo, voter=alice, age=rng.randint(20, 40)))
        votes += [Vote(photo=photo, voter=u, age=rng.randint(20, 40)) for u in voters[3:6]]
    Vote.objects.bulk_create(votes, batch_size=5000)
    call_command("recompute_consensus", "--fix", stdout=io.StringIO())
    call_command("rebuild_ledger", stdout=io.StringIO())
    return alice, len(votes)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--votes", type=int, default=5000)
    parser.add_argument("--others", type=int, default=20)
    args = parser.parse_args(argv)
    fresh_database()
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from bench.machine import cpu_model
    from privacy.models import AccountErasure
    from privacy.services import downloads, erasure

    t = time.perf_counter()
    alice, total = seed(args.photos, args.votes, args.others)
    print(f"machine: {cpu_model()}; seeded {args.photos} photos, {args.votes} guesses of the player, "
          f"{total} votes in all in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    download = downloads.build_download(downloads.DataDownload.objects.create(user=alice).pk)
    print(f"personal-data zip: {time.perf_counter() - t:.2f} s, {download.size_bytes / 1e6:.1f} MB, {download.counts}")
    row = AccountErasure.objects.create(user_id=alice.pk)
    t = time.perf_counter()
    done = erasure.run_erasure(row.pk)
    print(f"erasure: {time.perf_counter() - t:.2f} s, {done.status}, {done.counts}")
    t = time.perf_counter()
    call_command("recompute_consensus", "--check", stdout=io.StringIO())
    call_command("rebuild_ledger", "--check", "--dry-run", stdout=io.StringIO())
    print(f"recompute_consensus --check and rebuild_ledger --check: no difference ({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
