"""manage.py export_dataset OUT: the APPA-REAL zip, built in this process."""
import os
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling.models import ExportStatus
from labeling.selectors.exports import export_path
from labeling.services.exports import ExportRejected, export_now


class Command(BaseCommand):
    help = ("Export the dataset in the APPA-REAL layout to OUT (a .zip file). The export is recorded like one made "
            "on the site, and a copy of the zip is written to OUT.")

    def add_arguments(self, parser):
        parser.add_argument("out", type=Path, help="where to write the zip (a file name, or a folder)")
        parser.add_argument("--name", default="appareal", help="top folder inside the zip")
        parser.add_argument("--min-kept-votes", type=int, default=None,
                            help="photos with at least this many kept votes (default: the retired photos)")
        parser.add_argument("--include-simulated", action="store_true",
                            help="also simulated photos and the simulated players' votes")
        parser.add_argument("--include-dropped", action="store_true",
                            help="also write the votes dropped as outliers (gt_dropped_{split}.csv)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, out: Path, name, min_kept_votes, include_simulated, include_dropped, no_progress,
               **options):
        if out.is_dir():
            out = out / f"{name}.zip"
        if not out.parent.is_dir():
            raise CommandError(f"{out.parent} does not exist")
        bar = tqdm(total=100, file=self.stderr, disable=no_progress, unit="%")

        def on_progress(fraction):
            bar.update(int(fraction * 100) - bar.n)

        try:
            export = export_now(name=name, min_kept_votes=min_kept_votes, include_simulated=include_simulated,
                                include_dropped=include_dropped, on_progress=on_progress)
        except ExportRejected as exc:
            raise CommandError(f"--{exc.field.replace('_', '-')}: {exc.message}") from None
        finally:
            bar.close()
        if export.status != ExportStatus.SUCCEEDED:
            raise CommandError(f"export {export.pk} failed: {export.error}")
        out.unlink(missing_ok=True)
        try:
            os.link(export_path(export), out)  # same disk: no second copy of a multi-GB file
        except OSError:
            shutil.copyfile(export_path(export), out)
        c = export.counts
        self.stdout.write(self.style.SUCCESS(
            f"export {export.pk}: {c['total_photos']} photos (train {c['photos']['train']}, valid {c['photos']['valid']},"
            f" test {c['photos']['test']}), {c['total_votes']} kept votes, {c['total_dropped_votes']} dropped -> {out}"
        ))
        self.stdout.write(f"sha256 {export.sha256}  {export.size_bytes} bytes")
