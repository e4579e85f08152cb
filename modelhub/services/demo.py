"""A fresh site that shows the whole loop (``make demo``, ``manage.py demo_setup``).

Each step goes through the app's own services and is skipped when it is done already, so running
it again changes nothing:

1. faces: a seeded sample of UTKFace's aligned faces (``../shared/data/utkface/aligned``, research
   data: it stays in MEDIA_ROOT and the database, both git-ignored) or, without it, the
   repository's own licensed fixtures with made-up ages, imported through the upload pipeline;
2. the crowd simulator's votes, then a fit of the rater model (labels with their standard errors,
   the bias cards, the voting pool's plan);
3. a dataset export for model training (the imported photos carry every consent scope; it is on
   the Exports page to download). It takes photos with at least MIN_KEPT_VOTES kept votes, the
   exports page's alternative to the default rule (retired photos only): with a few simulated
   votes per photo hardly any photo reaches the default target SE yet;
4. a retrain through the app's retrain (a recipe, a few CPU minutes), whose promotion activates
   the model; the model player "DEX" then guesses every photo (and so is on the boards).
"""
from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Q

from labeling.models import DatasetExport, ExportPurpose, ExportStatus, Photo, PlayerKind
from labeling.services.exports import export_now
from labeling.services.imports import import_faces_dir
from labeling.services.rater_fit import fit_due, run_fit
from labeling.services.simulation import simulate_crowd
from modelhub.models import ModelVersion, RunStatus
from modelhub.services.predictions import backfill_predictions
from modelhub.services.runs import open_run, request_training
from modelhub.services.training import run_training
from modeling.data import age_from_name

UTKFACE = settings.BASE_DIR.parent / "shared" / "data" / "utkface" / "aligned"
FIXTURES = settings.BASE_DIR / "tests" / "fixtures"
FIXTURE_AGES = FIXTURES / "demo_ages.csv"
VOTES_PER_PHOTO = 15      # the export takes photos with 10 kept votes; a few votes are dropped as outliers
MIN_KEPT_VOTES = 10
SIMULATED_PLAYERS = 40


class DemoFailed(Exception):
    """A step of the demo could not be done; the message says which and why."""


@dataclass
class DemoOptions:
    source: str = "auto"          # auto (UTKFace when present, else the fixtures) | fixtures | a folder (UTKFace names)
    faces: int = 300
    recipe: str | None = None     # default: cpu-demo on UTKFace, smoke on the fixtures
    max_minutes: float = 3.0
    target: str = "full"
    seed: int = 0


@dataclass
class DemoReport:
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)


def _age_ok(age) -> bool:
    return age is not None and 0 <= age <= 100


def _source(options: DemoOptions) -> tuple[str, Path | None]:
    if options.source == "fixtures" or (options.source == "auto" and not UTKFACE.is_dir()):
        return "fixtures", None
    folder = UTKFACE if options.source == "auto" else Path(options.source)
    if not folder.is_dir():
        raise DemoFailed(f"{folder} is not a folder of faces")
    return "utkface", folder


def import_faces(options: DemoOptions, report: DemoReport, progress) -> None:
    kind, folder = _source(options)
    dataset = f"demo-{kind}"
    have = Photo.objects.filter(import_key__startswith=f"{dataset}:").count()
    if kind == "fixtures":
        summary = import_faces_dir(FIXTURES, labels=f"csv:{FIXTURE_AGES}", consent=True, dataset=dataset,
                                   progress=progress)
    elif have >= options.faces:
        report.say(f"faces: {have} already imported from {folder}")
        return
    else:
        names = sorted(p.name for p in folder.iterdir() if _age_ok(age_from_name(p.name)))
        sample = sorted(random.Random(options.seed).sample(names, min(options.faces, len(names))))
        tmp = Path(tempfile.mkdtemp(prefix="appareal-demo-"))
        try:  # the sample as links in a folder of its own: the import keys are the file names
            for name in sample:
                (tmp / name).symlink_to(folder / name)
            summary = import_faces_dir(tmp, labels="utkface", consent=True, dataset=dataset, progress=progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report.say(f"faces from {folder or FIXTURES} ({kind}): {summary.lines()[0]}")
    if not Photo.objects.filter(import_key__startswith=f"{dataset}:").exists():
        raise DemoFailed("no face could be imported: " + "; ".join(summary.lines()[1:4]))


def simulate_votes(options: DemoOptions, report: DemoReport, progress) -> None:
    photos = (Photo.objects.filter(import_key__startswith="demo-")
              .annotate(sim=Count("votes", filter=Q(votes__voter_kind=PlayerKind.SIMULATED)))
              .filter(sim__lt=VOTES_PER_PHOTO).values_list("pk", flat=True))
    ids = list(photos)
    if not ids:
        report.say("crowd: every photo has its simulated votes already")
        return
    summary = simulate_crowd(players=SIMULATED_PLAYERS, votes=len(ids) * VOTES_PER_PHOTO, seed=options.seed,
                             photo_ids=ids, progress=progress)
    report.say(f"crowd: {summary.line()}")


def fit_crowd(report: DemoReport) -> None:
    reason = fit_due()
    if reason is None:
        report.say("rater model: fitted on every vote already")
        return
    run = run_fit(trigger="demo")
    if run is None:
        report.say("rater model: another fit is running; the next tick publishes it")
        return
    report.say(f"rater model: fitted ({reason}) on {run.votes} votes, {run.photos} photos, {run.raters} raters")


def make_export(report: DemoReport) -> DatasetExport:
    export = (DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED, name="demo", purpose=ExportPurpose.TRAINING)
              .order_by("-pk").first())
    if export is not None:
        report.say(f"export: #{export.pk} is there already")
        return export
    export = export_now(name="demo", include_simulated=True, purpose=ExportPurpose.TRAINING,
                        min_kept_votes=MIN_KEPT_VOTES)
    if export.status != ExportStatus.SUCCEEDED:
        raise DemoFailed(f"the export failed: {export.error}")
    report.say(f"export: #{export.pk}, photos per split {export.counts.get('photos')}")
    return export


def train_model(options: DemoOptions, export: DatasetExport, report: DemoReport) -> None:
    if ModelVersion.objects.filter(is_active=True).exists():
        report.say("model: one is active already")
        return
    run = open_run()
    if run is None:
        kind, _ = _source(options)
        recipe = options.recipe or ("cpu-demo" if kind == "utkface" else "smoke")
        run = request_training(export=export.pk, recipe=recipe, target=options.target, max_minutes=options.max_minutes)
    run.refresh_from_db()
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):  # queued (a broker) or left by a killed demo
        run_training(run.pk)
        run.refresh_from_db()
    if run.status != RunStatus.SUCCEEDED:
        raise DemoFailed(f"training run #{run.pk} {run.status}: {run.error or run.log_tail[-500:]}")
    report.say(f"model: run #{run.pk} ({run.plan.get('recipe')}) {run.promotion.get('summary', '')}")


def set_up_demo(options: DemoOptions, *, progress: Callable = lambda it, **kw: it,
                watch_training=contextlib.nullcontext) -> DemoReport:
    """Every step of the demo that is not done yet; a DemoReport says what each did. ``progress``
    wraps the import's and the simulator's loops (tqdm), ``watch_training()`` the training."""
    report = DemoReport()
    import_faces(options, report, progress)
    simulate_votes(options, report, progress)
    fit_crowd(report)
    export = make_export(report)
    with watch_training():
        train_model(options, export, report)
    totals = backfill_predictions()  # photos a model has not guessed yet (none after a fresh promotion)
    report.say(f"predictions: {totals['predicted']} photos guessed now, {totals['voted']} DEX votes")
    return report
