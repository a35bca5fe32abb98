"""Seed statistics on hand-worked numbers."""

import numpy as np
import pytest

from rlhp_jax import stats


def test_iqm_hand_worked():
  # 8 seeds: the middle four (sorted positions 2..5) count
  assert stats.iqm([100, 1, 5, 3, 2, 4, 6, -50]) == pytest.approx((2 + 3 + 4 + 5) / 4)
  # 4 seeds: the middle two
  assert stats.iqm([0, 10, 20, 1000]) == pytest.approx(15)
  # 6 seeds: positions 1 and 4 count half (they straddle the quartiles)
  assert stats.iqm([1, 2, 3, 4, 5, 6]) == pytest.approx((0.5 * 2 + 3 + 4 + 0.5 * 5) / 3)
  assert stats.iqm([7.0]) == 7.0


def test_bootstrap_interval_covers_and_narrows():
  rng = np.random.default_rng(0)
  few = rng.normal(100, 10, 8)
  many = rng.normal(100, 10, 64)
  lo8, hi8 = stats.bootstrap_ci(few, resamples=2000)
  lo64, hi64 = stats.bootstrap_ci(many, resamples=2000)
  assert lo8 < stats.iqm(few) < hi8 and lo64 < 100 < hi64
  assert hi64 - lo64 < hi8 - lo8
  s = stats.summarize(few, resamples=500)
  assert s["n_seeds"] == 8 and s["ci95"][0] <= s["iqm"] <= s["ci95"][1]
  r = stats.ratio_ci(few * 0.9, few, resamples=500)
  assert r["ratio"] == pytest.approx(0.9) and r["ci95"][0] < 0.9 < r["ci95"][1] + 1e-9


def test_share_interval_is_wilsons():
  # hand-worked Wilson score intervals (z = 1.959964)
  s = stats.share_ci([True] * 5 + [False] * 3)
  assert (s["met"], s["of"], s["share"]) == (5, 8, 0.625)
  assert s["ci95"] == pytest.approx([0.3057, 0.8632], abs=1e-4)
  every = stats.share_ci([True] * 8)["ci95"]
  assert every[1] == 1.0 and every[0] == pytest.approx(0.6756, abs=1e-4)  # never [1, 1]
  assert stats.share_ci([False] * 8)["ci95"] == pytest.approx([0.0, 0.3244], abs=1e-4)
  # more seeds, a narrower interval around the same share
  wide, narrow = stats.share_ci([1, 0] * 4)["ci95"], stats.share_ci([1, 0] * 32)["ci95"]
  assert narrow[1] - narrow[0] < wide[1] - wide[0] and narrow[0] < 0.5 < narrow[1]
  with pytest.raises(ValueError):
    stats.share_ci([])
