"""Recompute every photo's consensus from its votes and report any difference with the cache.

    manage.py recompute_consensus            # report only
    manage.py recompute_consensus --fix      # and repair the photos that differ
    manage.py recompute_consensus --check    # exit with an error when anything differs

The consensus core is exact (integer sums), so "no difference" means bit-identical floats.
"""
from itertools import groupby

from django.core.management.base import BaseCommand, CommandError

from labeling.consensus import compute_consensus
from labeling.models import Photo, Vote
from labeling.scoring import counts_for_consensus
from labeling.services.votes import consensus_rule, refresh_consensus

SHOWN = 20


class Command(BaseCommand):
    help = "Recompute every photo's consensus (n_votes, n_kept, apparent age, std, se, kept flags) and report differences."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="Repair the photos that differ.")
        parser.add_argument("--check", action="store_true", help="Fail (exit status 1) when anything differs.")
        parser.add_argument("--chunk", type=int, default=2000, help="Photos per batch.")

    def handle(self, *args, fix=False, check=False, chunk=2000, **options):
        rule = consensus_rule()
        checked = votes_seen = 0
        differing: list[tuple[int, str]] = []
        last_id = 0
        while True:
            photos = list(
                Photo.objects.filter(pk__gt=last_id)
                .order_by("pk")
                .values_list("pk", "n_votes", "n_kept", "apparent_age", "apparent_age_std", "apparent_age_se")[:chunk]
            )
            if not photos:
                break
            first, last_id = photos[0][0], photos[-1][0]
            votes = (
                Vote.objects.filter(photo_id__gte=first, photo_id__lte=last_id)
                .order_by("photo_id", "id")
                .values_list("photo_id", "age", "voter_kind", "kept")
            )
            by_photo = {pid: list(rows) for pid, rows in groupby(votes.iterator(chunk_size=20000), key=lambda r: r[0])}
            for pk, n_votes, n_kept, apparent, std, se in photos:
                rows = by_photo.get(pk, [])
                votes_seen += len(rows)
                counting = [r for r in rows if counts_for_consensus(r[2])]
                consensus = compute_consensus([r[1] for r in counting], rule)
                expected = (consensus.n_votes, consensus.n_kept, consensus.apparent_age, consensus.std, consensus.se)
                stored = (n_votes, n_kept, apparent, std, se)
                reasons = []
                if expected != stored:
                    reasons.append(f"cache {stored} != recomputed {expected}")
                flags_stored = [r[3] for r in counting]
                if flags_stored != list(consensus.kept):
                    reasons.append(f"{sum(a != b for a, b in zip(flags_stored, consensus.kept))} kept flag(s) differ")
                if any(r[3] for r in rows if not counts_for_consensus(r[2])):
                    reasons.append("a model vote is marked kept")
                if reasons:
                    differing.append((pk, "; ".join(reasons)))
                checked += 1
        for pk, reason in differing[:SHOWN]:
            self.stdout.write(f"photo {pk}: {reason}")
        if len(differing) > SHOWN:
            self.stdout.write(f"... and {len(differing) - SHOWN} more")
        if fix:
            for pk, _ in differing:
                refresh_consensus(pk)
        self.stdout.write(
            f"checked {checked} photos, {votes_seen} votes: {len(differing)} difference(s)"
            + (" (fixed)" if fix and differing else "")
        )
        if check and differing:
            raise CommandError(f"{len(differing)} photo(s) differ from a full recomputation")
