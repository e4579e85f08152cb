"""Crowd intelligence (issue 15): rater-aware consensus, retirement at a target precision and the
active next photo, side by side with today's rule (38 votes per photo, cleaned mean), on one
simulated crowd.  Prints its figures and the machine; no database, no shared data (the crowd comes
from labeling.crowd_model, whose fitted APPA-REAL table is committed).

    .venv/bin/python bench/bench_crowd_raters.py                        # the reported run (seed 2026)
    .venv/bin/python bench/bench_crowd_raters.py --seed 1 --sweep 0.8,1.0,1.2   # tuning runs: other seeds
    .venv/bin/python bench/bench_crowd_raters.py --scale-only           # the EM's runtime at 100k x 40

What runs (one world per seed: faces, their true apparent ages, raters, a model's predictions):

(a) today: every photo gets 38 votes from distinct raters drawn by activity; label = the cleaned
    mean (labeling.consensus.compute_consensus).
(c) the same votes, label = the rater model's estimate (labeling.rater_model.fit_raters).
(b) the app's pipeline, as the app runs it (docs/crowd.md): raters arrive one at a time (drawn by
    activity) and get the photo the next-photo read serves them (labeling.photo_priority.pick_photo
    over the pool: not retired and n_votes < the vote budget of the last fit; the lowest need level,
    8 candidates re-scored with the rater's own stored vote variance, labeling.rater_terms, and the
    model gap; 10% exploration).  The vote path changes nothing but the vote count: estimates,
    levels, budgets and retirement come only from the fits (labeling.pool_plan.plan_after_fit, the
    function the Celery job calls).  Re-fits (warm start) as the app's tick: after
    max(--refit-min, --refit-frac x the votes of the last fit) new votes, and at once when the pool
    ran dry (no photo left to serve; the tick checks every minute).  A rater with nothing open for
    them is turned away (the app's 204).  The run ends when a fit finds every photo retired;
    label = the last fit.
(d) the attribution rows: fixed-count votes at (b)'s mean number of votes per photo, labelled by
    the cleaned mean and by the rater model (no active choice, no retirement).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402

from labeling import crowd_model as cm  # noqa: E402
from labeling.consensus import compute_consensus  # noqa: E402
from labeling.photo_priority import pick_photo, priority  # noqa: E402
from labeling.pool_plan import DEFAULT_BUDGET_SHARE, plan_after_fit  # noqa: E402
from labeling.rater_model import RaterModelOptions, fit_raters  # noqa: E402
from labeling.rater_terms import FittedPopulation  # noqa: E402
from labeling.retirement import RetirementRule  # noqa: E402

OPTIONS = RaterModelOptions()


@dataclass
class World:
    real: np.ndarray
    truth: np.ndarray
    model_pred: np.ndarray
    crowd: cm.RaterCrowd
    stats: cm.CrowdStats
    seed: int

    @property
    def n_photos(self) -> int:
        return self.truth.size

    @property
    def n_raters(self) -> int:
        return self.crowd.bias.size


def make_world(n_photos: int, n_raters: int, seed: int, model_sd: float) -> World:
    rng = np.random.default_rng([seed, 1])
    stats = cm.CrowdStats.load()
    crowd = cm.draw_rater_crowd(n_raters, rng)
    real, truth = cm.draw_faces(stats, n_photos, rng)
    model_pred = truth + rng.normal(0.0, model_sd, n_photos) if model_sd > 0 else np.full(n_photos, np.nan)
    return World(real=real, truth=truth, model_pred=model_pred, crowd=crowd, stats=stats, seed=seed)


def fixed_votes(world: World, per_photo: int, stream: int):
    """per_photo votes on every photo from distinct raters drawn by activity."""
    rng = np.random.default_rng([world.seed, 2, stream])
    p = np.repeat(np.arange(world.n_photos), per_photo)
    r = np.concatenate([rng.choice(world.n_raters, per_photo, replace=False, p=world.crowd.activity)
                        for _ in range(world.n_photos)])
    a = cm.draw_crowd_votes(world.stats, world.crowd, world.real[p], world.truth[p], r, rng)
    return p, r, a


def plain_labels(photo, age, n_photos: int) -> np.ndarray:
    order = np.argsort(photo, kind="stable")
    bounds = np.searchsorted(photo[order], np.arange(n_photos + 1))
    ages = age[order]
    return np.array([compute_consensus(ages[bounds[i]:bounds[i + 1]].tolist()).apparent_age for i in range(n_photos)],
                    dtype=float)


def errors(label, truth) -> dict:
    e = np.asarray(label, float) - truth
    a = np.abs(e)
    return {"mae": a.mean(), "rmse": np.sqrt(np.mean(e ** 2)), "p90": np.percentile(a, 90), "bias": e.mean()}


@dataclass
class ActiveRun:
    label: np.ndarray
    se: np.ndarray
    votes: np.ndarray
    total_votes: int
    refits: int
    dry_refits: int
    turned_away: int
    em_seconds: float
    loop_seconds: float
    unretired_by_fits: int
    budget_spent_at_fit: float  # share of the unretired photos whose budget was spent when a fit came


class ActiveGame:
    """The app's game loop between and at fits (see the module docstring, (b))."""

    def __init__(self, world: World, rule: RetirementRule, *, explore: float, refit_min: int, refit_frac: float,
                 use_model: bool, model_sd: float, budget_share: float):
        self.w, self.rule, self.explore, self.model_sd = world, rule, explore, model_sd
        self.budget_share = budget_share
        self.refit_min, self.refit_frac = refit_min, refit_frac
        self.rng = np.random.default_rng([world.seed, 3])
        n_p, n_r = world.n_photos, world.n_raters
        self.predicted = world.model_pred if use_model else np.full(n_p, np.nan)
        # A photo never fitted: no estimate, the neediest level, the hard cap as its budget.
        self.est, self.se = np.full(n_p, np.nan), np.full(n_p, np.inf)
        self.level = np.zeros(n_p, np.int64)
        self.budget = np.full(n_p, rule.hard_cap, np.int64)
        self.retired = np.zeros(n_p, bool)
        self.n = np.zeros(n_p, np.int64)
        self.keys = self.rng.random(n_p)  # set at upload, never redrawn (the vote path does not touch it)
        self.voted = np.zeros((n_r, n_p), bool)
        cap = n_p * rule.hard_cap + 1
        self.photo, self.rater, self.age = (np.zeros(cap, np.int64) for _ in range(3))
        self.t = 0
        self.fit = None
        self.population = FittedPopulation.starting(OPTIONS)
        self.votes_at_fit = 0
        self.refits, self.dry_refits, self.turned_away, self.em_seconds, self.unretired = 0, 0, 0, 0.0, 0
        self.spent_at_fit: list[float] = []

    def own_variance(self, r: int, cands: np.ndarray) -> np.ndarray:
        """The read's vote variance: the rater's stored noise and band SEs, or the population's."""
        ages = self.w.real[cands]
        if self.fit is None or self.fit.rater_votes[r] == 0:
            return self.population.vote_variance(ages)
        return self.population.vote_variance(ages, self.fit.noise[r], self.fit.band_bias_se[r])

    def in_pool(self) -> np.ndarray:
        return ~self.retired & (self.n < self.budget)

    def refit(self) -> bool:
        """The Celery job: fit every vote so far, then the pool until the next fit. True when every
        photo is retired."""
        open_before = ~self.retired
        self.spent_at_fit.append(float(np.mean((self.n >= self.budget)[open_before])) if open_before.any() else 0.0)
        t0 = time.perf_counter()
        warm = self.fit.warm_start() if self.fit is not None else None
        p, r, a = self.photo[:self.t], self.rater[:self.t], self.age[:self.t]
        self.fit = fit_raters(p, r, a, n_photos=self.w.n_photos, n_raters=self.w.n_raters, band_age=self.w.real,
                              warm_start=warm, options=OPTIONS)
        plan, self.population = plan_after_fit(
            self.fit, vote_photo=p, vote_rater=r, votes_per_photo=self.n, band_age=self.w.real,
            predicted=self.predicted, gold=np.full(self.w.n_photos, np.nan), rule=self.rule, model_sd=self.model_sd,
            budget_share=self.budget_share)
        self.em_seconds += time.perf_counter() - t0
        self.refits += 1
        self.unretired += int(np.count_nonzero(self.retired & ~plan.retired))
        self.est, self.se = self.fit.estimate.copy(), self.fit.se.copy()
        self.level, self.budget, self.retired = plan.need_level, plan.budget, plan.retired
        self.votes_at_fit = self.t
        return bool(np.all(self.retired))

    def vote(self, r: int) -> bool:
        """One request and, when a photo is served, the vote; False when the rater was turned away."""
        gap = self.predicted - self.est

        def score(cands):
            return priority(self.se[cands], self.n[cands], self.own_variance(r, cands), gap[cands], rule=self.rule,
                            model_sd=self.model_sd)

        levels = np.where(self.in_pool(), self.level, -1)
        p = pick_photo(levels, self.keys, ~self.voted[r], self.rng, explore=self.explore, score=score)
        if p < 0:
            self.turned_away += 1
            return False
        age = int(cm.draw_crowd_votes(self.w.stats, self.w.crowd, self.w.real[[p]], self.w.truth[[p]], [r], self.rng)[0])
        self.n[p] += 1
        self.voted[r, p] = True
        self.photo[self.t], self.rater[self.t], self.age[self.t] = p, r, age
        self.t += 1
        return True

    def fit_due(self) -> str | None:
        if self.t == self.votes_at_fit:
            return None
        if self.t - self.votes_at_fit >= max(self.refit_min, self.refit_frac * self.votes_at_fit):
            return "new votes"
        if not self.in_pool().any():
            return "pool ran dry"
        return None

    def run(self) -> ActiveRun:
        t0 = time.perf_counter()
        stream = np.random.default_rng([self.w.seed, 4])
        done = False
        while not done:
            for r in stream.choice(self.w.n_raters, 4096, p=self.w.crowd.activity):
                reason = self.fit_due()
                if reason:
                    self.dry_refits += reason == "pool ran dry"
                    done = self.refit()
                    break
                self.vote(int(r))
        loop = time.perf_counter() - t0 - self.em_seconds
        return ActiveRun(label=self.fit.estimate, se=self.fit.se, votes=self.n.copy(), total_votes=self.t,
                         refits=self.refits, dry_refits=self.dry_refits, turned_away=self.turned_away,
                         em_seconds=self.em_seconds, loop_seconds=loop, unretired_by_fits=self.unretired,
                         budget_spent_at_fit=float(np.mean(self.spent_at_fit)) if self.spent_at_fit else 0.0)


# --- Reporting ------------------------------------------------------------------------------------

def row(name: str, votes_per_photo: float, label, truth, extra: str = "") -> str:
    e = errors(label, truth)
    return (f"| {name} | {votes_per_photo:.1f} | {e['mae']:.3f} | {e['rmse']:.3f} | {e['p90']:.3f} | {e['bias']:+.3f} |"
            f" {extra} |")


def compare(world: World, args, target_se: float) -> dict:
    truth = world.truth
    print(f"\n## seed {world.seed}: {world.n_photos} photos, {world.n_raters} raters "
          f"({int(world.crowd.spammer.sum())} spammers), target SE {target_se}, hard cap {args.hard_cap}, "
          f"budget share {args.budget_share:g}")
    t0 = time.perf_counter()
    p, r, a = fixed_votes(world, args.fixed_votes, 0)
    plain = plain_labels(p, a, world.n_photos)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = fit_raters(p, r, a, n_photos=world.n_photos, n_raters=world.n_raters, band_age=world.real, options=OPTIONS)
    t_fit = time.perf_counter() - t0
    rule = RetirementRule(target_se=target_se, min_votes=args.min_votes, hard_cap=args.hard_cap)
    game = ActiveGame(world, rule, explore=args.explore, refit_min=args.refit_min, refit_frac=args.refit_frac,
                      use_model=args.model_sd > 0, model_sd=args.model_sd if args.model_sd > 0 else 6.0,
                      budget_share=args.budget_share)
    act = game.run()
    n_b = act.total_votes / world.n_photos
    k = max(1, round(n_b))
    p2, r2, a2 = fixed_votes(world, k, 1)
    plain_k = plain_labels(p2, a2, world.n_photos)
    fit_k = fit_raters(p2, r2, a2, n_photos=world.n_photos, n_raters=world.n_raters, band_age=world.real, options=OPTIONS)
    print("| label | votes / photo | MAE | RMSE | p90 abs error | mean error |  |")
    print("|---|---|---|---|---|---|---|")
    print(row(f"(a) today: {args.fixed_votes} votes, cleaned mean", args.fixed_votes, plain, truth, f"{t_plain:.1f} s"))
    print(row(f"(c) same {args.fixed_votes} votes, rater model", args.fixed_votes, fit.estimate, truth,
              f"EM {t_fit:.1f} s, {fit.iterations} it"))
    votes = act.votes
    print(row("(b) active + retirement + rater model", n_b, act.label, truth,
              f"p10/p50/p90 votes {np.percentile(votes, 10):.0f}/{np.percentile(votes, 50):.0f}/{np.percentile(votes, 90):.0f}, "
              f"{np.mean(votes >= args.hard_cap):.1%} at the cap"))
    print(row(f"(d) {k} votes each, cleaned mean", k, plain_k, truth))
    print(row(f"(d) {k} votes each, rater model", k, fit_k.estimate, truth))
    print(f"\nSanity: the real age as a predictor of (a)'s labels, MAE {errors(world.real, plain)['mae']:.3f} "
          f"(the paper's figure for APPA-REAL: 4.573)")
    z = (act.label - truth) / act.se
    saved = 1 - n_b / args.fixed_votes
    print(f"\n(b) spent {act.total_votes} votes ({n_b:.2f}/photo, {saved:.1%} fewer than (a)); {act.refits} EM fits, "
          f"{act.dry_refits} of them because the pool ran dry ({act.em_seconds:.1f} s in all), game loop "
          f"{act.loop_seconds:.1f} s; {act.turned_away} requests turned away (nothing open for that rater); "
          f"{act.unretired_by_fits} photos came back into the pool after a fit; at a fit, on average "
          f"{act.budget_spent_at_fit:.1%} of the unretired photos had spent their budget; final SE mean "
          f"{np.mean(act.se):.3f}, calibration mean (err/SE)^2 = {np.mean(z ** 2):.2f}, "
          f"|err| <= 1.96 SE for {np.mean(np.abs(z) <= 1.96):.1%}")
    band = world.crowd.band_of(world.real)
    print("\nMAE by the face's real-age band: | band | photos | (a) | (c) | (b) | (b) votes / photo |")
    for b, name in enumerate(("0-19", "20-39", "40-59", "60+")):
        m = band == b
        print(f"| {name} | {m.sum()} | {errors(plain[m], truth[m])['mae']:.3f} | {errors(fit.estimate[m], truth[m])['mae']:.3f} "
              f"| {errors(act.label[m], truth[m])['mae']:.3f} | {votes[m].mean():.1f} |")
    honest = ~world.crowd.spammer
    heavy = (fit.rater_votes >= 50) & honest
    if heavy.any():
        tb = world.crowd.bias[:, None] + world.crowd.band_bias
        cells = (fit.rater_band_votes >= 20) & heavy[:, None]
        print(f"\n(c)'s raters with >= 50 votes ({heavy.sum()} honest): band-bias RMSE "
              f"{np.sqrt(np.mean((fit.band_bias - tb)[cells] ** 2)):.2f} years (true SD {np.std(tb[honest]):.2f}); "
              f"noise fitted/true median {np.median(fit.noise[heavy] / world.crowd.noise[heavy]):.2f}; "
              f"spammers' fitted noise median {np.median(fit.noise[(fit.rater_votes >= 50) & ~honest]):.1f} years")
    return {"target": target_se, "mae_a": errors(plain, truth)["mae"], "mae_c": errors(fit.estimate, truth)["mae"],
            "mae_b": errors(act.label, truth)["mae"], "votes_b": n_b}


def scale(args) -> None:
    rng = np.random.default_rng([args.seed, 9])
    stats = cm.CrowdStats.load()
    crowd = cm.draw_rater_crowd(args.scale_raters, rng)
    real, truth = cm.draw_faces(stats, args.scale_photos, rng)
    photo = np.repeat(np.arange(args.scale_photos), args.scale_votes)
    rater = rng.choice(args.scale_raters, photo.size, p=crowd.activity)  # duplicates within a photo allowed
    age = cm.draw_crowd_votes(stats, crowd, real[photo], truth[photo], rater, rng)
    t0 = time.perf_counter()
    fit = fit_raters(photo, rater, age, band_age=real, options=OPTIONS)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = fit_raters(photo, rater, age, band_age=real, warm_start=fit.warm_start(), options=OPTIONS)
    warm = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n## EM at scale: {args.scale_photos} photos x {args.scale_votes} votes = {photo.size} votes, "
          f"{args.scale_raters} raters")
    print(f"cold start {cold:.1f} s ({fit.iterations} iterations, converged {fit.converged}); warm start from that fit "
          f"{warm:.1f} s ({again.iterations} iterations; largest estimate change {np.nanmax(np.abs(again.estimate - fit.estimate)):.4f} "
          f"years); MAE {errors(fit.estimate, truth)['mae']:.3f}; peak RSS of the process {peak:.0f} MiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=3000)
    ap.add_argument("--raters", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=2026, help="the reported run; tune on other seeds")
    ap.add_argument("--fixed-votes", type=int, default=38)
    ap.add_argument("--target-se", type=float, default=1.0)
    ap.add_argument("--sweep", default="", help="comma-separated target SEs: one (b) run each")
    ap.add_argument("--min-votes", type=int, default=5)
    ap.add_argument("--hard-cap", type=int, default=60)
    ap.add_argument("--explore", type=float, default=0.1)
    ap.add_argument("--refit-min", type=int, default=2000)
    ap.add_argument("--refit-frac", type=float, default=0.1)
    ap.add_argument("--budget-share", type=float, default=DEFAULT_BUDGET_SHARE,
                    help="share of the votes a photo still needs that its budget allows until the next fit "
                         "(APPAREAL_POOL_BUDGET_SHARE)")
    ap.add_argument("--model-sd", type=float, default=6.0, help="simulated model prediction error SD; 0 = no model")
    ap.add_argument("--scale-photos", type=int, default=100_000)
    ap.add_argument("--scale-votes", type=int, default=40)
    ap.add_argument("--scale-raters", type=int, default=25_000)
    ap.add_argument("--scale-only", action="store_true")
    ap.add_argument("--no-scale", action="store_true")
    args = ap.parse_args()
    print(f"# bench_crowd_raters: {' '.join(sys.argv[1:]) or '(defaults)'}")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), {ram:.0f} GiB RAM, load average {os.getloadavg()[0]:.1f} "
          f"at start; Python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"rater model options: {OPTIONS}")
    if not args.scale_only:
        world = make_world(args.photos, args.raters, args.seed, args.model_sd)
        targets = [float(x) for x in args.sweep.split(",") if x] or [args.target_se]
        results = [compare(world, args, target) for target in targets]
        print("\n## The issue's goal: the same or lower label MAE than (a) with at least 40% fewer votes; "
              "with equal votes a lower MAE")
        print(f"equal votes ({args.fixed_votes}): rater model MAE {results[0]['mae_c']:.3f} vs cleaned mean "
              f"{results[0]['mae_a']:.3f}: {'met' if results[0]['mae_c'] < results[0]['mae_a'] else 'NOT met'}")
        for r in results:
            saved = 1 - r["votes_b"] / args.fixed_votes
            met = saved >= 0.4 and r["mae_b"] <= r["mae_a"]
            print(f"target SE {r['target']:g}: {r['votes_b']:.1f} votes/photo ({saved:.1%} fewer), MAE {r['mae_b']:.3f} "
                  f"vs {r['mae_a']:.3f}: {'met' if met else 'NOT met'}")
    if not args.no_scale:
        scale(args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
