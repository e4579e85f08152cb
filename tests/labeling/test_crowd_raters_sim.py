"""The crowd simulator's heterogeneous raters (labeling.crowd_model, issue 15).  Pure."""
import numpy as np
import pytest

from labeling import crowd_model as cm


def test_rater_population():
    crowd = cm.draw_rater_crowd(4000, np.random.default_rng(0))
    honest = ~crowd.spammer
    assert crowd.spammer.mean() == pytest.approx(0.05, abs=0.015)
    assert abs(crowd.bias[honest].mean()) < 1e-9 and np.allclose(crowd.band_bias[honest].mean(axis=0), 0)
    assert crowd.bias.std() == pytest.approx(3.0, rel=0.1)
    assert crowd.noise.min() >= 2.0 and crowd.noise.max() <= 10.0
    assert crowd.activity.sum() == pytest.approx(1.0)
    # Long-tailed activity: the busiest 10% cast over half of the votes, the quietest half ~10%.
    share = np.sort(crowd.activity)[::-1]
    assert share[:400].sum() > 0.5 and share[2000:].sum() < 0.15
    with pytest.raises(ValueError):
        cm.draw_rater_crowd(0, np.random.default_rng(0))


def test_faces_and_votes():
    rng = np.random.default_rng(1)
    stats = cm.CrowdStats.load()
    real, truth = cm.draw_faces(stats, 3000, rng)
    assert real.min() >= 0 and real.max() <= 100 and truth.min() >= 0
    # Young adults look older than they are, the elderly younger (the fitted table).
    assert np.mean(truth[(real >= 17) & (real < 25)] - real[(real >= 17) & (real < 25)]) > 2
    assert np.mean(truth[real >= 70] - real[real >= 70]) < -4
    crowd = cm.draw_rater_crowd(200, rng)
    rater = rng.choice(200, real.size, p=crowd.activity)
    votes = cm.draw_crowd_votes(stats, crowd, real, truth, rater, rng)
    assert votes.dtype == np.int64 and votes.min() >= 0 and votes.max() <= 100
    honest = ~crowd.spammer[rater]
    resid = votes[honest] - truth[honest] - crowd.total_bias(rater[honest], real[honest])
    assert abs(np.median(resid)) < 0.5
    # The youngest faces: errors shrink with the age, so votes do not pile up at 0.
    miss = np.abs(votes - truth)
    baby, adult = honest & (truth < 2), honest & (truth > 20) & (truth < 40)
    assert baby.sum() > 20 and miss[baby].mean() < 0.4 * miss[adult].mean()


def test_spammers_guess_anything():
    rng = np.random.default_rng(2)
    stats = cm.CrowdStats.load()
    crowd = cm.draw_rater_crowd(50, rng, spammer_share=1.0)
    votes = cm.draw_crowd_votes(stats, crowd, np.full(2000, 30.0), np.full(2000, 33.0), np.zeros(2000, int), rng)
    assert votes.min() < 10 and votes.max() > 90
