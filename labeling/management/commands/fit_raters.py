"""Fit the rater model now, or check the stored fit.

    manage.py fit_raters                       # fit every counting vote and publish (docs/crowd.md)
    manage.py fit_raters --check               # refit without writing; exit 1 on differences
    manage.py fit_raters --check --tolerance 0.05

Celery beat runs the fit by itself (`labeling.rater_fit_tick`); without beat (`make run`) run this
after votes arrive, e.g. after `simulate_crowd`: photos retire, and the default export (retired
photos) has something to hold, only after a fit.
"""
from django.core.management.base import BaseCommand, CommandError

from labeling.services.rater_fit import run_fit
from labeling.services.rater_fit_check import check_fit

SHOWN = 20


class Command(BaseCommand):
    help = "Fit the rater model to every counting vote and update the voting pool (or --check the stored fit)."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Refit without writing; fail on differences.")
        parser.add_argument("--tolerance", type=float, default=0.05,
                            help="Years (estimates, standard errors, biases, noise) within which values agree.")

    def handle(self, *args, check=False, tolerance=0.05, **options):
        if not tolerance > 0:
            raise CommandError("--tolerance must be a positive number of years")
        if check:
            report = check_fit(tolerance=tolerance)
            for line in report.differences[:SHOWN]:
                self.stdout.write(line)
            if len(report.differences) > SHOWN:
                self.stdout.write(f"... and {len(report.differences) - SHOWN} more")
            self.stdout.write(f"compared {report.photos_compared} photos ({report.photos_voted_since} voted on since "
                              f"the last fit, not compared) and {report.raters_compared} raters: "
                              f"{len(report.differences)} difference(s) beyond {tolerance:g} years")
            if not report.ok:
                raise CommandError(f"{len(report.differences)} stored value(s) differ from a refit")
            return
        run = run_fit(trigger="command")
        if run is None:
            raise CommandError("Another rater fit is running; try again when it has finished.")
        t = run.timings
        self.stdout.write(
            f"rater fit {run.pk}: {run.votes} votes, {run.photos} photos ({run.gold_photos} gold), {run.raters} raters; "
            f"{run.iterations} iterations (converged {run.converged}); read {t.get('read')} s, fit {t.get('fit')} s, "
            f"write {t.get('write')} s (photos {t.get('write_photos')} s); photos written {run.photos_updated}, left for the next fit "
            f"{run.photos_skipped}, unchanged {run.photos_unchanged}, retired {run.photos_retired}"
        )
