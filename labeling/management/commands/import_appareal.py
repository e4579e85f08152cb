"""manage.py import_appareal DIR --consent: the public APPA-REAL release (or any export of this site)."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.management.commands._import_common import CONSENT_HELP, print_summary, progress_bars
from labeling.services.imports import import_appareal_dir


class Command(BaseCommand):
    help = ("Import a folder in the APPA-REAL layout: photos with their _face.jpg crops, real ages, the release's "
            "split, and its votes as votes of anonymous imported raters. Idempotent: run it again to resume.")

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument("--consent", action="store_true", help=CONSENT_HELP)
        parser.add_argument("--dataset", default="appareal", help="prefix of the import keys (default appareal)")
        parser.add_argument("--splits", default="train,valid,test")
        parser.add_argument("--limit", type=int, default=None, help="stop after this many new photos")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, directory: Path, consent, dataset, splits, limit, no_progress, **options):
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder")
        if not consent:
            raise CommandError("Pass --consent to confirm that this collection may be used for research here.")
        summary = import_appareal_dir(
            directory, consent=True, dataset=dataset, splits=tuple(s for s in splits.split(",") if s), limit=limit,
            progress=progress_bars(self.stderr, not no_progress),
        )
        print_summary(self, summary)
