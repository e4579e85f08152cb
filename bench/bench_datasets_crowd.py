"""Crowd simulator vs the APPA-REAL labels (no database needed).

    .venv/bin/python bench/bench_datasets_crowd.py --fit     # refit labeling/crowd_model.json
    .venv/bin/python bench/bench_datasets_crowd.py           # compare simulated crowd vs labels

Reads ../shared/data/appa_real/appa_real_labels_merged.csv (test split: real age + mean apparent
age of 1,978 faces).  Prints, per 10-year band of real age, mean and std of (apparent - real) on the
labels and on a simulated crowd voting on the same real ages, and "real age as a predictor of
apparent age" MAE on both (the paper: 4.573).
"""
import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeling import crowd_model as cm  # noqa: E402

LABELS = ROOT.parent / "shared" / "data" / "appa_real" / "appa_real_labels_merged.csv"


def load_test_labels(path: Path = LABELS):
    real, app = [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "test" and row["apparent_age_avg"]:
                real.append(float(row["real_age"]))
                app.append(float(row["apparent_age_avg"]))
    return np.array(real), np.array(app)


def simulate(stats, real, *, votes_per_photo: int, players: int, seed: int):
    """Each face gets `votes_per_photo` votes from distinct random players; returns per-face
    consensus (outlier rule of DESIGN.md when labeling.consensus is importable, else plain mean)."""
    try:
        from labeling.consensus import ConsensusRule, compute_consensus

        rule = ConsensusRule()
    except Exception:  # noqa: BLE001 - the bench still runs without the consensus module
        compute_consensus = rule = None
    rng = np.random.default_rng(seed)
    pool = cm.draw_players(players, rng)
    means, stds, kept_share = [], [], []
    for r in real:
        offset = cm.photo_offset(stats, r, rng)
        voters = rng.choice(players, size=votes_per_photo, replace=False)
        ages = [cm.draw_vote(stats, r, offset, pool[v], rng) for v in voters]
        if compute_consensus is not None:
            c = compute_consensus(ages, rule)
            means.append(c.apparent_age)
            stds.append(c.std)
            kept_share.append(c.n_kept / c.n_votes)
        else:
            means.append(float(np.mean(ages)))
            stds.append(float(np.std(ages)))
            kept_share.append(1.0)
    return np.array(means), np.array(stds), float(np.mean(kept_share)), compute_consensus is not None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", action="store_true", help="refit and write labeling/crowd_model.json")
    ap.add_argument("--votes-per-photo", type=int, default=38, help="APPA-REAL's average is ~38")
    ap.add_argument("--players", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not LABELS.is_file():
        sys.exit(f"{LABELS} is missing (research-only data, not in the repository)")
    real, app = load_test_labels()
    if args.fit:
        stats = cm.fit(real, app, source="APPA-REAL test split labels (1,978 faces): appa_real_labels_merged.csv")
        cm.MODEL_PATH.write_text(stats.to_json() + "\n")
        print(f"wrote {cm.MODEL_PATH}")
    stats = cm.CrowdStats.load()
    t0 = time.perf_counter()
    sim_mean, sim_std, kept_share, used_rule = simulate(
        stats, real, votes_per_photo=args.votes_per_photo, players=args.players, seed=args.seed
    )
    took = time.perf_counter() - t0
    print(f"# APPA-REAL test labels vs simulated crowd ({len(real)} faces, {args.votes_per_photo} votes each, "
          f"{args.players} players, seed {args.seed}; consensus {'DESIGN.md outlier rule' if used_rule else 'plain mean'}; "
          f"{took:.1f} s)")
    print("| real age | n | labels: mean app-real | labels: std | simulated: mean app-real | simulated: std |")
    print("|---|---|---|---|---|---|")
    lab = {b: (n, m, s) for b, n, m, s in cm.band_table(real, app)}
    for b, n, m, s in cm.band_table(real, sim_mean):
        ln, lm, ls = lab[b]
        print(f"| {b} | {n} | {lm:+.2f} | {ls:.2f} | {m:+.2f} | {s:.2f} |")
    print(f"\nReal GT as predictor of apparent age, MAE: labels {cm.mae(real, app):.3f} (paper 4.573), "
          f"simulated crowd {cm.mae(real, sim_mean):.3f}")
    print(f"Simulated vote std per face: mean {np.mean(sim_std):.2f}, median {np.median(sim_std):.2f}; "
          f"share of votes kept by the outlier rule {kept_share:.3f}")
    print(f"epsilon-error of the real age vs the simulated crowd: {cm.epsilon_error(real, sim_mean, sim_std):.4f}")


if __name__ == "__main__":
    main()
