"""manage.py import_faces DIR --labels utkface|fgnet|csv:FILE --consent"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.management.commands._import_common import CONSENT_HELP, print_summary, progress_bars
from labeling.services.imports import import_faces_dir


class Command(BaseCommand):
    help = ("Import a folder of face photos with real ages (in the file names: UTKFace AGE_GENDER_RACE_DATE.jpg, "
            "FG-NET 078A11.JPG; or in a CSV with file_name,real_age), each through the upload face pipeline. "
            "Photos that fail are listed, the rest imported. Idempotent: run it again to resume.")

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument("--labels", required=True, help="utkface, fgnet or csv:FILE")
        parser.add_argument("--consent", action="store_true", help=CONSENT_HELP)
        parser.add_argument("--dataset", default=None, help="prefix of the import keys (default: the labels kind)")
        parser.add_argument("--limit", type=int, default=None, help="stop after this many new photos")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, directory: Path, labels, consent, dataset, limit, no_progress, **options):
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder")
        if not consent:
            raise CommandError("Pass --consent to confirm that this collection may be used for research here.")
        if labels not in ("utkface", "fgnet") and not labels.startswith("csv:"):
            raise CommandError(f"--labels {labels!r}: use utkface, fgnet or csv:FILE")
        summary = import_faces_dir(directory, labels=labels, consent=True, dataset=dataset, limit=limit,
                                   progress=progress_bars(self.stderr, not no_progress))
        print_summary(self, summary)
