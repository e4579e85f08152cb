"""Predict every photo that has no prediction from the active model (or all, with --all)."""
import time

from django.core.management.base import BaseCommand

from modelhub.services.predictions import backfill_predictions


class Command(BaseCommand):
    help = "Back-fill the active model's apparent/real age predictions (and the model player's votes)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="predict every photo again, not only stale ones")
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--no-votes", action="store_true", help="do not cast the model player's votes")

    def handle(self, *args, **opts):
        t0 = time.monotonic()

        def progress(done, total):
            self.stdout.write(f"  {done}/{total} photos ({done / max(1e-9, time.monotonic() - t0):.1f}/s)")

        totals = backfill_predictions(all_photos=opts["all"], batch_size=opts["batch_size"],
                                               on_progress=progress, vote=not opts["no_votes"])
        elapsed = time.monotonic() - t0
        if totals.get("reason"):
            self.stdout.write(self.style.WARNING(f"Nothing predicted: {totals['reason']}."))
            return
        rate = totals["predicted"] / elapsed if elapsed > 0 else 0.0
        self.stdout.write(self.style.SUCCESS(
            f"{totals['predicted']} photos predicted, {totals['voted']} model votes, {totals['failed']} failed, "
            f"in {elapsed:.1f} s ({rate:.1f} photos/s)"))
