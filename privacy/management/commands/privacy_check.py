"""Find (and with --fix repair) what privacy promises and the storage disagree on.

    manage.py privacy_check            # report: orphan files, rows without files, pending work
    manage.py privacy_check --fix      # and repair: delete orphans, run the sweep (deletions,
                                       # half-finished erasures and downloads, expiry) in this process
    manage.py privacy_check --check    # exit with an error when anything is wrong (after --fix: still wrong)

Orphans: files under PRIVATE_ROOT/originals, exports, downloads or MEDIA_ROOT/faces that no row
names (older than APPAREAL ORPHAN_GRACE_MINUTES), and any original left in MEDIA_ROOT/originals.
"""
from django.core.management.base import BaseCommand, CommandError

from privacy.models import PendingFileDeletion
from privacy.services.orphans import find_orphans, fix_orphans
from privacy.services.sweep import stale_downloads, stale_erasures, sweep

SHOWN = 20


class Command(BaseCommand):
    help = "Report orphan files, rows without files and unfinished privacy work; --fix repairs, --check fails on any."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="Repair: delete orphans, finish pending work here.")
        parser.add_argument("--check", action="store_true", help="Fail (exit status 1) when anything is wrong.")

    def handle(self, *args, fix=False, check=False, **options):
        if fix:
            done = sweep(run_inline=True)
            self.stdout.write("sweep: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in done.items()))
        report = find_orphans()
        if fix and report.problems:
            fix_orphans(report)
        for store, name in report.files_without_rows[:SHOWN]:
            self.stdout.write(f"file without a row: {store}:{name}")
        for label, ids in (("photo without its files", report.photos_without_files),
                           ("export without its zip", report.exports_without_files),
                           ("download without its zip", report.downloads_without_files)):
            for pk in ids[:SHOWN]:
                self.stdout.write(f"{label}: {pk}")
        pending = PendingFileDeletion.objects.count()
        erasures = stale_erasures().count()
        downloads = stale_downloads().count()
        self.stdout.write(
            f"{len(report.files_without_rows)} file(s) without rows, {len(report.photos_without_files)} photo(s), "
            f"{len(report.exports_without_files)} export(s) and {len(report.downloads_without_files)} download(s) "
            f"without files" + (" (fixed)" if report.fixed else "") + f"; {pending} file deletion(s) pending, "
            f"{erasures} erasure(s) and {downloads} download(s) unfinished"
        )
        wrong = (0 if report.fixed else report.problems) + pending + erasures + downloads
        if check and wrong:
            raise CommandError(f"{wrong} privacy problem(s) left")
