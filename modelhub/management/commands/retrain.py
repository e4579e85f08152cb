"""Ask for a training run from the command line (the same path as the Retrain button)."""
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modelhub.models import TrainingRun
from modelhub.services.runs import TrainingRefused, request_training
from modelhub.services.training import run_training


class Command(BaseCommand):
    help = "Queue (or, with --inline, run here) a training run on an export or a dataset folder."

    def add_arguments(self, parser):
        parser.add_argument("--export", default="latest", help="'latest', 'now' or an export id")
        parser.add_argument("--data", help="a dataset folder in the APPA-REAL layout instead of an export")
        parser.add_argument("--target", default="full", choices=["full", "apparent", "real"])
        parser.add_argument("--backbone", default=None)
        parser.add_argument("--max-minutes", type=float, default=None)
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--image-size", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--inline", action="store_true", help="train in this process instead of queueing")

    def handle(self, *args, **o):
        options = {k: v for k, v in {"export": o["export"], "target": o["target"], "backbone": o["backbone"],
                                     "max_minutes": o["max_minutes"], "epochs": o["epochs"],
                                     "image_size": o["image_size"], "batch_size": o["batch_size"]}.items()
                   if v is not None}
        # A command has no server around it to keep a background thread alive: with no broker (or
        # with --inline) the run happens here, in the foreground.
        settings.MODELING_TRAIN_IN_THREAD = False
        try:
            run = request_training(dataset_dir=o["data"], **options)
        except TrainingRefused as exc:
            raise CommandError(exc.message) from None
        if o["inline"] and TrainingRun.objects.get(pk=run.pk).status == "queued":
            run_training(run.pk)
        run.refresh_from_db()
        self.stdout.write(json.dumps({"run": run.pk, "status": run.status, "promotion": run.promotion,
                                      "error": run.error}, indent=2))
