"""manage.py import_faces DIR --labels utkface|fgnet|csv:FILE --consent"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling.services.imports import import_faces_dir

CONSENT_HELP = (
    "confirm that the collection's terms allow its use for research on this platform; imported photos "
    "are then treated like uploads with consent (and can be exported)"
)


def _progress(stream, enabled: bool):
    """tqdm progress bars on stderr (the summary goes to stdout)."""
    def progress(iterable, **kw):
        return tqdm(iterable, file=stream, disable=not enabled, dynamic_ncols=True, **kw)

    return progress


def _print_summary(command, summary) -> None:
    lines = summary.lines()
    style = command.style.SUCCESS if not summary.failed else command.style.WARNING
    command.stdout.write(style(lines[0]))
    for line in lines[1:]:
        command.stdout.write(line)


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
                                   progress=_progress(self.stderr, not no_progress))
        _print_summary(self, summary)
