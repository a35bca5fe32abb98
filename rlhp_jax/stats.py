"""Statistics over seeds (host side, numpy): seeds, not episodes, are the unit of comparison.

Following Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice"): the
interquartile mean (IQM) of per-seed scores, with a 95% percentile-bootstrap interval over
seeds.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def iqm(scores) -> float:
  """Interquartile mean: the mean of the middle half of the scores (25% trimmed from each end;
  with n not divisible by 4 the boundary scores count fractionally, as scipy's trim_mean with
  proportional weights would not: here a score straddling a quartile counts by the share of it
  inside). scores: [n] -> float."""
  x = np.sort(np.asarray(scores, float).ravel())
  n = len(x)
  if n == 0:
    raise ValueError("iqm of no scores")
  # each sorted score occupies [i/n, (i+1)/n) of the distribution; weight = overlap with
  # [0.25, 0.75)
  lo, hi = np.arange(n) / n, np.arange(1, n + 1) / n
  w = np.clip(np.minimum(hi, 0.75) - np.maximum(lo, 0.25), 0.0, None)
  return float(np.sum(w * x) / np.sum(w))


def bootstrap_ci(scores, statistic=iqm, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of ``statistic`` over seeds: resample the n scores with
  replacement ``resamples`` times. Returns (low, high)."""
  x = np.asarray(scores, float).ravel()
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(x), size=(resamples, len(x)))
  stats = np.array([statistic(x[i]) for i in idx])
  tail = (1 - confidence) / 2
  return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def summarize(scores, **kw) -> dict:
  """IQM, its 95% bootstrap interval, mean, min, max and the per-seed scores."""
  x = np.asarray(scores, float).ravel()
  low, high = bootstrap_ci(x, **kw)
  return {"iqm": iqm(x), "ci95": [low, high], "mean": float(x.mean()), "min": float(x.min()),
          "max": float(x.max()), "n_seeds": len(x), "per_seed": x.tolist()}


def ratio_ci(numerator, denominator, confidence: float = 0.95, resamples: int = 10_000,
             seed: int = 0) -> dict:
  """IQM(numerator) / IQM(denominator) with a bootstrap interval, resampling both arms' seeds
  independently (the arms are separate runs)."""
  a, b = np.asarray(numerator, float).ravel(), np.asarray(denominator, float).ravel()
  rng = np.random.default_rng(seed)
  ia = rng.integers(0, len(a), size=(resamples, len(a)))
  ib = rng.integers(0, len(b), size=(resamples, len(b)))
  r = np.array([iqm(a[i]) / iqm(b[j]) for i, j in zip(ia, ib)])
  tail = (1 - confidence) / 2
  return {"ratio": iqm(a) / iqm(b),
          "ci95": [float(np.quantile(r, tail)), float(np.quantile(r, 1 - tail))]}


def share_ci(successes, confidence: float = 0.95) -> dict:
  """The share of seeds that succeed (e.g. meet a bar), with the Wilson score interval.

  A per-seed pass/fail is a Bernoulli draw, and with 8 seeds the percentile bootstrap of a share
  collapses to [0, 0] or [1, 1] whenever every seed agrees; Wilson's interval does not (8 of 8:
  [0.68, 1.00]). successes: [n] bools -> {"met", "of", "share", "ci95", "per_seed"}."""
  x = np.asarray(successes, bool).ravel()
  n, k = len(x), int(x.sum())
  if n == 0:
    raise ValueError("share of no seeds")
  z = NormalDist().inv_cdf(0.5 + confidence / 2)
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return {"met": k, "of": n, "share": p,
          "ci95": [float(max(0.0, centre - half)), float(min(1.0, centre + half))],
          "per_seed": x.tolist()}
