"""Rebuild the points ledger and the totals from votes and uploads, reporting every difference
(and check the players-per-points levels that ranks are read from against the totals).

    manage.py rebuild_ledger              # rebuild: report and repair
    manage.py rebuild_ledger --dry-run    # report only
    manage.py rebuild_ledger --check      # exit with an error when anything differed

Run it while nothing else awards points (e.g. after the load benchmark, or in maintenance).
"""
from django.core.management.base import BaseCommand, CommandError

from leaderboard.services.ledger_rebuild import rebuild_ledger


class Command(BaseCommand):
    help = "Rebuild the points ledger and per-player totals from votes and uploads; report differences."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only report, write nothing.")
        parser.add_argument("--check", action="store_true", help="Fail (exit status 1) when anything differs.")
        parser.add_argument("--chunk", type=int, default=2000, help="Photos per batch.")

    def handle(self, *args, dry_run=False, check=False, chunk=2000, **options):
        report = rebuild_ledger(apply=not dry_run, chunk=chunk)
        for line in report.examples:
            self.stdout.write(line)
        self.stdout.write(
            f"checked {report.photos} photos, {report.awards_expected} awards: "
            f"{report.missing} missing, {report.extra} extra, {report.changed} changed; "
            f"totals differing: {report.totals_differ} all-time, {report.week_totals_differ} weekly; "
            f"points levels differing: {report.levels_differ}; "
            f"{report.differences} difference(s)" + ("" if dry_run or not report.differences else " (repaired)")
        )
        if check and report.differences:
            raise CommandError(f"{report.differences} difference(s) between the ledger and the data")
