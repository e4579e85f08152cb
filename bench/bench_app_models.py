"""Models in the app (issue 7): "Retrain" to an active model on a 2k-photo export with the CPU
default, and the back-fill's predictions per second on CPU.

    .venv/bin/python bench/bench_app_models.py --photos 2000 [--max-minutes 5] [--workdir /tmp/appareal-bench]

Builds its own SQLite database and media folder under --workdir (never the project's): N UTKFace
aligned faces from ../shared/data/utkface/aligned become photos (the aligned chips are used as the
face crops directly, skipping MTCNN, which is not what is measured here), a simulated crowd votes
(10 votes per photo), then the same path as the Retrain button with the form's defaults and
"export now": export -> unzip -> Apparent DEX -> Residual DEX -> Real DEX -> SVR -> Tables II/III ->
promotion. Prints the time from the request to the active model, then times
`backfill_predictions --all` (apparent + real-age pipeline + the DEX player's vote per photo).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--votes-per-photo", type=int, default=10)
    ap.add_argument("--max-minutes", type=float, default=None, help="default: the Retrain form's default")
    ap.add_argument("--workdir", default="/tmp/appareal-bench-models")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    (work / "media").mkdir(parents=True)
    os.environ.update(DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}", MEDIA_ROOT=str(work / "media"),
                      PRIVATE_ROOT=str(work / "private"), CELERY_BROKER_URL="", DJANGO_SETTINGS_MODULE="appareal_site.settings",
                      DEBUG=os.environ.get("DEBUG", "1"))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.MODELING_TRAIN_IN_THREAD = False
    call_command("migrate", verbosity=0)

    import numpy as np

    from labeling import crowd_model as cm
    from labeling.models import Photo, PlayerKind, Vote
    from labeling.services.votes import refresh_consensus
    from modelhub.models import ModelVersion
    from modelhub.services import predictions, run_settings, runs, training
    from tests.factories import make_user

    t = time.monotonic()
    files = sorted(p for p in UTK.iterdir() if p.name.endswith(".jpg"))
    random.Random(args.seed).shuffle(files)
    owner = make_user("importer", kind=PlayerKind.IMPORTED)
    admin = make_user("admin", staff=True)
    photos = []
    media = Path(settings.MEDIA_ROOT)
    for i, src in enumerate(files):
        if len(photos) >= args.photos:
            break
        age = int(src.name.split("_")[0])
        if not 0 <= age <= 100:
            continue
        rel = f"bench/{i:06d}.jpg"
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, media / rel)
        photos.append(Photo(owner=owner, real_age=age, consent=True, width=200, height=200, image=rel, face_image=rel,
                            face={"box": [0, 0, 200, 200], "confidence": 1.0}, source="import",
                            import_key=f"utk:{src.name}", shuffle_key=random.random()))
    Photo.objects.bulk_create(photos, batch_size=500)
    photos = list(Photo.objects.order_by("pk"))
    stats = cm.CrowdStats.load()  # the crowd model fitted on the APPA-REAL labels
    rng = np.random.default_rng(args.seed)
    n_players = max(args.votes_per_photo, 40)
    users = [make_user(kind=PlayerKind.SIMULATED) for _ in range(n_players)]
    sims = cm.draw_players(n_players, rng)
    votes = []
    for p in photos:
        offset = cm.photo_offset(stats, p.real_age, rng)
        for j in rng.choice(n_players, size=args.votes_per_photo, replace=False):
            votes.append(Vote(photo=p, voter=users[j], voter_kind=PlayerKind.SIMULATED,
                              age=cm.draw_vote(stats, p.real_age, offset, sims[j], rng)))
    Vote.objects.bulk_create(votes, batch_size=2000)
    for p in photos:
        refresh_consensus(p.pk)
    print(f"setup: {len(photos)} photos, {len(votes)} simulated votes in {time.monotonic() - t:.1f} s", flush=True)

    # The Retrain button's path, with the form's defaults and "export now".
    training.queue_stale_predictions = lambda: None  # timed separately below
    defaults = run_settings.default_train_settings()
    options = {"export": "now", "include_simulated": True}
    if args.max_minutes is not None:
        options["max_minutes"] = args.max_minutes
    t0 = time.monotonic()
    run = runs.request_training(user=admin, **options)
    run.refresh_from_db()
    wall = time.monotonic() - t0
    assert run.status == "succeeded", run.error + "\n" + run.log_tail
    active = ModelVersion.objects.filter(is_active=True)
    activated = max(v.activated_at for v in active)
    print(json.dumps({"settings": {**defaults, **options}, "run": run.pk, "status": run.status,
                      "export_photos": run.dataset_export.counts.get("photos"),
                      "retrain_to_active_s": round((activated - run.created_at).total_seconds(), 1),
                      "request_wall_s": round(wall, 1), "promotion": run.promotion.get("summary")}, indent=1))
    print(run.log_tail)
    print(run.tables.get("markdown", ""))

    Photo.objects.update(predicted_by=None, predicted_apparent_age=None, predicted_real_age=None)
    t1 = time.monotonic()
    totals = predictions.backfill_predictions(all_photos=True, batch_size=64)
    dt = time.monotonic() - t1
    print(f"backfill: {totals['predicted']} photos, {totals['voted']} DEX votes in {dt:.1f} s = "
          f"{totals['predicted'] / dt:.1f} photos/s")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
