"""manage.py demo_setup: a site with faces to guess, a crowd, an export and an active model (`make demo`)."""
import contextlib
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from appareal_site.celery import app as celery_app
from labeling.management.commands._import_common import progress_bars
from modelhub.management.progress import watch_progress
from modelhub.services.demo import DemoFailed, DemoOptions, set_up_demo
from modelhub.services.run_settings import RECIPE_CHOICES


class Command(BaseCommand):
    help = ("Set up the demo (each step skipped when done): faces (a seeded sample of ../shared/data/utkface/aligned, "
            "else the repository's licensed fixtures with made-up ages) through the upload pipeline, the crowd "
            "simulator's votes, a dataset export, and a model trained and activated through the app's retrain, "
            "which then plays as DEX.")

    def add_arguments(self, parser):
        parser.add_argument("--source", default="auto", help="auto | fixtures | a folder of UTKFace-named faces")
        parser.add_argument("--faces", type=int, default=300, help="how many UTKFace faces (default 300)")
        parser.add_argument("--recipe", choices=RECIPE_CHOICES, default=None,
                            help="default: cpu-demo on UTKFace faces, smoke on the fixtures")
        parser.add_argument("--max-minutes", type=float, default=3.0, help="the training budget (default 3)")
        parser.add_argument("--target", choices=["full", "apparent", "real"], default="full")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **o):
        if o["faces"] < 1 or o["max_minutes"] <= 0:
            raise CommandError("--faces and --max-minutes must be positive")
        # Everything here, in the foreground: no broker, no background thread.
        celery_app.conf.task_always_eager = True
        settings.MODELING_TRAIN_IN_THREAD = False
        show = not o["no_progress"]

        @contextlib.contextmanager
        def watch_training():
            stop = threading.Event()
            watcher = watch_progress(self.stderr, stop) if show else None
            try:
                yield
            finally:
                stop.set()
                if watcher:
                    watcher.join(timeout=5)

        options = DemoOptions(source=o["source"], faces=o["faces"], recipe=o["recipe"], max_minutes=o["max_minutes"],
                              target=o["target"], seed=o["seed"])
        try:
            report = set_up_demo(options, progress=progress_bars(self.stderr, show), watch_training=watch_training)
        except DemoFailed as exc:
            raise CommandError(str(exc)) from None
        for line in report.lines:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("The demo is ready: guess at /vote/, the boards at /leaderboard/, "
                                             "exports at /exports/, models at /staff/models/."))
