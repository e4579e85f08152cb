"""manage.py simulate_crowd --players N --votes M"""
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labeling import crowd_model as cm
from labeling.services.simulation import simulate_crowd


def _progress(stream, enabled: bool):
    """tqdm progress bars on stderr (the summary goes to stdout)."""
    def progress(iterable, **kw):
        return tqdm(iterable, file=stream, disable=not enabled, dynamic_ncols=True, **kw)

    return progress


class Command(BaseCommand):
    help = ("Synthetic players vote on the photos in the voting pool, following the apparent-vs-real relation "
            "measured on the APPA-REAL labels. Simulated players and votes are marked as such and kept out of "
            "points, leaderboards and exports (unless an export asks for them).")

    def add_arguments(self, parser):
        parser.add_argument("--players", type=int, required=True)
        parser.add_argument("--votes", type=int, required=True, help="total number of votes to place")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--careless-share", type=float, default=cm.CARELESS_SHARE,
                            help=f"share of players who guess at random (default {cm.CARELESS_SHARE})")
        parser.add_argument("--photo", type=int, action="append", dest="photo_ids", default=None,
                            help="only this photo id (repeatable)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, players, votes, seed, careless_share, photo_ids, no_progress, **options):
        if players < 1:
            raise CommandError("--players must be at least 1")
        if votes < 0:
            raise CommandError("--votes must not be negative")
        if not 0 <= careless_share <= 1:
            raise CommandError("--careless-share must be between 0 and 1")
        summary = simulate_crowd(players=players, votes=votes, seed=seed, careless_share=careless_share,
                                 photo_ids=photo_ids, progress=_progress(self.stderr, not no_progress))
        self.stdout.write(self.style.SUCCESS(summary.line()))
