"""Export benchmark: 30k photos and up to 1M votes in a separate PostgreSQL database.

    .venv/bin/python bench/bench_datasets_export.py [--photos 30000] [--levels 300000,600000,1000000]

Creates (once) the database `appareal_bench_ds` (override with BENCH_DATABASE_URL), migrates it,
fills it with generated photos (tiny JPEGs under /tmp/appareal_bench_ds/media, one image and one
crop per photo) and votes from a pool of simulated raters, then for each vote level runs
`manage.py export_dataset` in a child process and prints its wall time and peak RSS (the child's
ru_maxrss).  Constant memory means the peak RSS stays flat while the votes grow.
"""
import argparse
import io
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appareal_bench_ds")
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/appareal_bench_ds"))
ENV = {**os.environ, "DATABASE_URL": DB_URL, "MEDIA_ROOT": str(WORK / "media"), "PRIVATE_ROOT": str(WORK / "private"),
       "CELERY_BROKER_URL": "", "REDIS_URL": "", "DJANGO_SETTINGS_MODULE": "appareal_site.settings",
       "DEBUG": os.environ.get("DEBUG", "1")}  # development settings, as before DEBUG defaulted to off


def ensure_database():
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=ENV, check=True)


def django_setup():
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def fill_photos(n_photos: int):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from PIL import Image

    from labeling.models import Photo, PhotoSource, PlayerKind, PlayerProfile

    have = Photo.objects.count()
    if have >= n_photos:
        return have
    User = get_user_model()
    owner, _ = User.objects.get_or_create(username="bench-owner")
    PlayerProfile.objects.get_or_create(user=owner, defaults={"kind": PlayerKind.IMPORTED})
    media = WORK / "media"
    (media / "bench").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    batch = []
    for i in range(have, n_photos):
        # Small distinct JPEGs (about 1-2 KB): the export copies real files, one pair per photo.
        for kind, size in (("img", (96, 96)), ("face", (64, 64))):
            buffer = io.BytesIO()
            Image.new("RGB", size, (i % 256, (i // 256) % 256, 128)).save(buffer, "JPEG", quality=80)
            (media / "bench" / f"{kind}{i}.jpg").write_bytes(buffer.getvalue())
        age = (i * 37) % 90 + 2
        batch.append(Photo(owner=owner, source=PhotoSource.IMPORT, import_key=f"bench:{i}", real_age=age,
                           consent=True, image=f"bench/img{i}.jpg", face_image=f"bench/face{i}.jpg", width=96,
                           height=96, face={"box": [0, 0, 64, 64]}, shuffle_key=(i * 0.6180339887) % 1))
        if len(batch) == 2000:
            Photo.objects.bulk_create(batch)
            batch = []
    Photo.objects.bulk_create(batch)
    connection.close()
    print(f"created {n_photos - have} photos in {time.perf_counter() - t0:.1f} s")
    return n_photos


def fill_votes(target: int, n_raters: int = 60):
    """Add simulated-crowd votes until the database holds `target` (votes per photo as even as possible)."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection

    from labeling import crowd_model as cm
    from labeling.models import Photo, PlayerKind, PlayerProfile, Vote

    have = Vote.objects.count()
    if have >= target:
        return
    User = get_user_model()
    raters = []
    for r in range(n_raters):
        user, created = User.objects.get_or_create(username=f"bench-rater-{r}")
        if created:
            PlayerProfile.objects.create(user=user, kind=PlayerKind.IMPORTED, birth_year=1960 + r % 45,
                                         gender=("female", "male", "")[r % 3])
        raters.append(user.pk)
    photos = list(Photo.objects.order_by("pk").values_list("pk", "real_age"))
    stats = cm.CrowdStats.load()
    rng = np.random.default_rng(0)
    players = cm.draw_players(n_raters, rng)
    per_photo_now = have // len(photos)
    need = target - have
    t0 = time.perf_counter()
    rows = []
    placed = 0
    # Raters are taken round-robin per photo, continuing after the ones already used.
    while placed < need:
        for pk, age in photos:
            if placed >= need:
                break
            slot = per_photo_now % n_raters
            look = cm.photo_offset(stats, age, np.random.default_rng([pk]))
            rows.append(Vote(photo_id=pk, voter_id=raters[slot], age=cm.draw_vote(stats, age, look, players[slot], rng),
                             voter_kind=PlayerKind.IMPORTED))
            placed += 1
            if len(rows) == 20000:
                Vote.objects.bulk_create(rows)
                rows = []
        per_photo_now += 1
    Vote.objects.bulk_create(rows)
    # Consensus cache in one statement (the export recomputes the consensus from the votes anyway).
    with connection.cursor() as cur:
        cur.execute("""UPDATE labeling_photo p SET n_votes = v.n, n_kept = v.n FROM
                       (SELECT photo_id, count(*) n FROM labeling_vote GROUP BY photo_id) v WHERE v.photo_id = p.id""")
    connection.close()
    print(f"added {need} votes in {time.perf_counter() - t0:.1f} s")


def run_export(tag: str) -> tuple[float, float, str]:
    out = WORK / f"export-{tag}.zip"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "manage.py", "export_dataset", str(out), "--name", "bench",
                             "--min-kept-votes", "5", "--no-progress"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        sys.exit(f"export failed: {stdout}\n{stderr}")
    size = out.stat().st_size
    out.unlink()
    return wall, usage.ru_maxrss / 1024, stdout.strip().splitlines()[0] + f" ({size / 2**20:.0f} MiB zip)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=30000)
    ap.add_argument("--levels", default="300000,600000,1000000", help="vote counts to export at")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_database()
    django_setup()
    fill_photos(args.photos)
    print(f"# export benchmark: {args.photos} photos; PostgreSQL {DB_URL.rsplit('/', 1)[1]}; "
          f"{os.cpu_count()} cores (shared)")
    print("| votes in DB | wall time (s) | peak RSS of the export process (MiB) | result |")
    print("|---|---|---|---|")
    for level in (int(x) for x in args.levels.split(",")):
        fill_votes(level)
        wall, rss, line = run_export(str(level))
        print(f"| {level:,} | {wall:.1f} | {rss:.0f} | {line} |", flush=True)
    print(f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
