"""Apparent age end to end through the app (issue 17, item 5): the crowd simulator (fitted on the
APPA-REAL labels, labeling.crowd_model) votes on UTKFace faces, the app exports them (simulated
votes included), and a retrain of the apparent target (or the full paper pipeline) runs through
the app's own path, ending with Tables II and III from modeling.evaluate.

    .venv/bin/python bench/bench_apparent_e2e.py --photos 3000 --votes-per-photo 15 \\
        [--recipe cpu-30min] [--target apparent|full] [--max-minutes 30] [--pipeline]

Builds its own SQLite database and media folder under --workdir (never the project's). The faces
are a seeded sample of ../shared/data/utkface/aligned; by default the aligned chips are stored as
the face crops (MTCNN skipped, as bench_app_models.py does), with --pipeline every photo goes
through the upload's face pipeline (import_faces, about 5 photos/s). Prints the split, the run's
plan and steps, the tables and the times; writes <workdir>/report.json.
"""
import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UTK = ROOT.parent / "shared" / "data" / "utkface" / "aligned"


def setup_django(work: Path):
    (work / "media").mkdir(parents=True, exist_ok=True)
    os.environ.update(DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}", MEDIA_ROOT=str(work / "media"),
                      PRIVATE_ROOT=str(work / "private"), CELERY_BROKER_URL="", DEBUG="1",
                      DJANGO_SETTINGS_MODULE="appareal_site.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.MODELING_TRAIN_IN_THREAD = False
    call_command("migrate", verbosity=0)


def add_faces(n: int, seed: int, pipeline: bool, work: Path) -> int:
    from django.conf import settings

    from labeling.models import Photo, PlayerKind
    from labeling.services.imports import import_faces_dir
    from tests.factories import make_user

    files = sorted(p for p in UTK.iterdir() if p.name.endswith(".jpg") and 0 <= int(p.name.split("_")[0]) <= 100)
    files = random.Random(seed).sample(files, min(n, len(files)))
    if pipeline:
        sample = work / "sample"
        sample.mkdir(exist_ok=True)
        for f in files:
            if not (sample / f.name).exists():
                (sample / f.name).symlink_to(f)
        return import_faces_dir(sample, labels="utkface", consent=True, dataset="utk").imported
    owner = make_user("importer", kind=PlayerKind.IMPORTED)
    media = Path(settings.MEDIA_ROOT)
    photos = []
    for i, src in enumerate(files):
        rel = f"bench/{i:06d}.jpg"
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, media / rel)
        photos.append(Photo(owner=owner, real_age=int(src.name.split("_")[0]), consent=True, consent_export=True,
                            consent_training=True, width=200, height=200,
                            image=rel, face_image=rel, face={"box": [0, 0, 200, 200], "confidence": 1.0},
                            source="import", import_key=f"utk:{src.name}", shuffle_key=random.random()))
    Photo.objects.bulk_create(photos, batch_size=500)
    return len(photos)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=3000)
    ap.add_argument("--votes-per-photo", type=int, default=15)
    ap.add_argument("--players", type=int, default=200)
    ap.add_argument("--recipe", default="auto")
    ap.add_argument("--target", default="apparent", choices=["apparent", "full"])
    ap.add_argument("--max-minutes", type=float, default=None, help="default: the recipe's")
    ap.add_argument("--pipeline", action="store_true", help="faces through the upload's face pipeline")
    ap.add_argument("--workdir", default="/tmp/appareal-bench-apparent")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not UTK.is_dir():
        print(f"error: {UTK} is not there", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    setup_django(work)
    from bench.machine import cpu_model
    from labeling.services.simulation import simulate_crowd
    from modelhub.services import runs, training
    from tests.factories import make_user

    t0 = time.monotonic()
    n = add_faces(args.photos, args.seed, args.pipeline, work)
    sim = simulate_crowd(players=args.players, votes=n * args.votes_per_photo, seed=args.seed)
    t_setup = time.monotonic() - t0
    print(f"setup: {n} photos, {sim.line()} in {t_setup:.0f} s", flush=True)
    training.queue_stale_predictions = lambda: None  # the back-fill is not what this measures
    options = {"export": "now", "include_simulated": True, "recipe": args.recipe, "target": args.target}
    if args.max_minutes is not None:
        options["max_minutes"] = args.max_minutes
    t1 = time.monotonic()
    run = runs.request_training(user=make_user("admin", staff=True), **options)
    run.refresh_from_db()
    wall = time.monotonic() - t1
    report = {"machine": cpu_model(), "load_average_end": os.getloadavg(), "photos": n, "simulation": sim.line(),
              "options": options, "status": run.status, "error": run.error, "wall_seconds": round(wall, 1),
              "export_photos": run.dataset_export.counts.get("photos") if run.dataset_export else None,
              "recipe": run.plan.get("recipe"), "level": run.plan.get("level"),
              "steps": {k: v.get("wall_seconds") for k, v in run.plan.get("state", {}).items()},
              "table2": run.tables.get("table2"), "table3": run.tables.get("table3"),
              "promotion": run.promotion.get("summary")}
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k not in ("table2", "table3")}, indent=1, default=str))
    print(run.tables.get("markdown", run.log_tail))
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
