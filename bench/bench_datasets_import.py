"""Import throughput through the face pipeline, on UTKFace "wild" (research-only data, never committed).

    .venv/bin/python bench/bench_datasets_import.py [--sample 1000] [--seed 0]

Takes a seeded random sample of ../shared/data/utkface/wild (symlinked into a scratch folder), runs
`import_faces --labels utkface` on it into a separate PostgreSQL database (`appareal_bench_ds_import`,
dropped and recreated each run; override with BENCH_IMPORT_DATABASE_URL), and prints photos/s (after
the detector's warm-up on the first photo), the failures by reason, and the process's peak RSS.
A second run over the same folder measures the idempotent skip path.
"""
import argparse
import collections
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WILD = ROOT.parent / "shared" / "data" / "utkface" / "wild"
DB_URL = os.environ.get("BENCH_IMPORT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appareal_bench_ds_import")
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/appareal_bench_ds_import"))
ENV = {"DATABASE_URL": DB_URL, "MEDIA_ROOT": str(WORK / "media"), "PRIVATE_ROOT": str(WORK / "private"),
       "CELERY_BROKER_URL": "", "REDIS_URL": "", "DJANGO_SETTINGS_MODULE": "appareal_site.settings",
       "DEBUG": os.environ.get("DEBUG", "1")}  # development settings, as before DEBUG defaulted to off


def fresh_database():
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env={**os.environ, **ENV}, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=1000, help="how many images of wild/ (0: all 8,950)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not WILD.is_dir():
        sys.exit(f"{WILD} is missing (research-only data, not in the repository)")
    shutil.rmtree(WORK, ignore_errors=True)
    folder = WORK / "sample"
    folder.mkdir(parents=True)
    files = sorted(WILD.iterdir())
    chosen = files if not args.sample else random.Random(args.seed).sample(files, args.sample)
    for path in chosen:
        (folder / path.name).symlink_to(path)
    fresh_database()
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from labeling.services.imports import import_faces_dir

    stamps = []

    def progress(iterable, **_kw):
        for item in iterable:
            stamps.append(time.perf_counter())
            yield item

    import torch

    t0 = time.perf_counter()
    summary = import_faces_dir(folder, labels="utkface", consent=True, progress=progress)
    wall = time.perf_counter() - t0
    stamps.append(time.perf_counter())
    steady = (len(stamps) - 2) / (stamps[-1] - stamps[1]) if len(stamps) > 2 else float("nan")
    reasons = collections.Counter(why.split(".")[0].split(" (")[0] for _, why in summary.failed)
    print(f"# import_faces --labels utkface on a random sample of {len(chosen)} images of utkface/wild "
          f"(seed {args.seed}); PostgreSQL; {os.cpu_count()} cores (shared); torch {torch.__version__} on CPU, "
          f"{torch.get_num_threads()} threads")
    print(f"imported {summary.imported}, failed {len(summary.failed)} in {wall:.1f} s: "
          f"{summary.imported / wall:.2f} photos/s overall, {steady:.2f} files/s after the first (model warm-up "
          f"{stamps[1] - stamps[0]:.1f} s)")
    for why, n in reasons.most_common():
        print(f"  {n:5d}  {why}")
    t1 = time.perf_counter()
    again = import_faces_dir(folder, labels="utkface", consent=True)
    print(f"second run (idempotent): {again.imported} imported, {again.already_there} already there, "
          f"{len(again.failed)} failed again, {time.perf_counter() - t1:.1f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
