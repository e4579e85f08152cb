"""Ask for a training run from the command line (the same path as the Retrain button)."""
import json
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modelhub.management.progress import watch_progress
from modelhub.models import TrainingRun
from modelhub.services.run_settings import RECIPE_CHOICES
from modelhub.services.runs import TrainingRefused, request_training
from modelhub.services.training import run_training


class Command(BaseCommand):
    help = ("Queue (or, with --inline or no broker, run here) a training run on an export or a dataset folder, "
            "with a recipe (default: MODELING_DEFAULT_RECIPE, 'auto') or the custom recipe's single-net settings.")

    def add_arguments(self, parser):
        parser.add_argument("--export", default="latest", help="'latest', 'now' or an export id")
        parser.add_argument("--data", help="a dataset folder in the APPA-REAL layout instead of an export")
        parser.add_argument("--recipe", default=None, choices=RECIPE_CHOICES,
                            help="default: MODELING_DEFAULT_RECIPE, or custom when a single-net setting is given")
        parser.add_argument("--target", default="full", choices=["full", "apparent", "real"])
        parser.add_argument("--max-minutes", type=float, default=None, help="budget (default: the recipe's)")
        parser.add_argument("--backbone", default=None, help="custom recipe")
        parser.add_argument("--epochs", type=int, default=None, help="custom recipe")
        parser.add_argument("--image-size", type=int, default=None, help="custom recipe")
        parser.add_argument("--batch-size", type=int, default=None, help="custom recipe")
        parser.add_argument("--inline", action="store_true", help="train in this process instead of queueing")
        parser.add_argument("--progress", action="store_true", help="a progress bar while it trains here")

    def handle(self, *args, **o):
        options = {k: v for k, v in {"export": o["export"], "recipe": o["recipe"], "target": o["target"],
                                     "backbone": o["backbone"], "max_minutes": o["max_minutes"],
                                     "epochs": o["epochs"], "image_size": o["image_size"],
                                     "batch_size": o["batch_size"]}.items()
                   if v is not None}
        # A command has no server around it to keep a background thread alive: with no broker (or
        # with --inline) the run happens here, in the foreground.
        settings.MODELING_TRAIN_IN_THREAD = False
        stop = threading.Event()
        watcher = watch_progress(self.stderr, stop) if o["progress"] else None
        try:
            run = request_training(dataset_dir=o["data"], **options)
            if o["inline"] and TrainingRun.objects.get(pk=run.pk).status == "queued":
                run_training(run.pk)
        except TrainingRefused as exc:
            raise CommandError(exc.message) from None
        finally:
            stop.set()
            if watcher:
                watcher.join(timeout=5)
                time.sleep(0.1)
        run.refresh_from_db()
        self.stdout.write(json.dumps({"run": run.pk, "status": run.status, "recipe": run.plan.get("recipe"),
                                      "promotion": run.promotion, "error": run.error}, indent=2))
