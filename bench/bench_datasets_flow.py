"""The operator's flow end to end on real faces: imported UTKFace -> simulated crowd -> export -> read back.

    .venv/bin/python bench/bench_datasets_import.py --sample 1000   # first: fills appareal_bench_ds_import
    .venv/bin/python bench/bench_datasets_flow.py [--players 200 --votes-per-photo 12]

Runs in the import benchmark's database (BENCH_IMPORT_DATABASE_URL): `simulate_crowd`, then
`export_dataset --include-simulated` (the photos' only votes are simulated), then reads the zip back
with the modeling side's reader (`modeling.data.read_dataset`) and compares the counts.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_URL = os.environ.get("BENCH_IMPORT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/appareal_bench_ds_import")
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/appareal_bench_ds_import"))
ENV = {**os.environ, "DATABASE_URL": DB_URL, "MEDIA_ROOT": str(WORK / "media"), "PRIVATE_ROOT": str(WORK / "private"),
       "CELERY_BROKER_URL": "", "REDIS_URL": "", "DJANGO_SETTINGS_MODULE": "appareal_site.settings",
       "DEBUG": os.environ.get("DEBUG", "1")}  # development settings, as before DEBUG defaulted to off


def manage(*args) -> tuple[str, float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip(), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, default=200)
    ap.add_argument("--votes-per-photo", type=int, default=12)
    args = ap.parse_args()
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from labeling.models import Photo, Vote

    photos = Photo.objects.filter(status="active").count()
    if not photos:
        sys.exit("no photos: run bench/bench_datasets_import.py first")
    if not Vote.objects.exists():
        line, took = manage("simulate_crowd", "--players", str(args.players), "--votes",
                            str(photos * args.votes_per_photo), "--no-progress")
        print(f"simulate_crowd: {line} ({took:.1f} s, {photos * args.votes_per_photo / took:.0f} votes/s)")
    out = WORK / "flow.zip"
    line, took = manage("export_dataset", str(out), "--name", "flow", "--min-kept-votes", "5", "--include-simulated",
                        "--no-progress")
    print(f"export_dataset: {line.splitlines()[0]} ({took:.1f} s)")
    from modeling.data import read_dataset

    expected = {s: dict(Photo.objects.filter(split=s, n_kept__gte=5).values_list("pk", "n_kept"))
                for s in ("train", "valid", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(out).extractall(tmp)
        data = read_dataset(os.path.join(tmp, "flow"), check_images=True)
    for split, samples in data.items():
        got = {int(s.file_name[:6]): s.num_ratings for s in samples}
        votes = sum(len(s.votes) for s in samples)
        same = got == expected[split] and votes == sum(expected[split].values())
        print(f"read back {split}: {len(samples)} photos, {votes} kept votes; database: {len(expected[split])} photos, "
              f"{sum(expected[split].values())} kept votes -> {'same' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
