"""One arm's IQM over another's, pooled over blocks of seeds run in separate invocations (no
training; results already on disk).

    python benchmarks/pooled_ratio.py \\
        --numerator   results/arms_A.json:preferences results/arms_B.json:preferences \\
        --denominator results/arms_C.json:true        results/arms_B.json:true

Issue 10's arm bar asks one 8-seed invocation for IQM(preferences) >= 0.9 IQM(task reward),
Gym-rules return. One invocation is one draw of 8 seeds, and where a third to a half of the
seeds fail, draws differ widely. Each ``FILE:ARM`` names one block of seeds: an arm of an
``arms.py`` JSON or a rule of an ``eval_actions.py`` JSON. The i-th numerator block is set
against the i-th denominator block, which must hold as many seeds (the same seeds, run by either
arm). Prints JSON:
- per block pair: each side's IQM and the ratio with its 95% bootstrap interval;
- pooled over every block: each side's IQM with its interval, the ratio with its interval, and
  the share of seeds meeting the main job's whole bar (``arms.UPRIGHT_BAR``), Wilson intervals;
- ``draws``: the share of ``--draw-seeds``-seed draws from the pooled seeds (with replacement,
  each side on its own) whose ratio reaches ``--bar``: how often one invocation of the bar's
  comparison would meet it, if the pooled seeds are what the method gives.
The blocks may come from different commits or hosts; the JSON names every file so a reader can
tell.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # arms, bar_rates when imported
from arms import SCORES, UPRIGHT_BAR, upright_bar  # noqa: E402
from bar_rates import has_bar_scores, stored_arms  # noqa: E402
from rlhp_jax import config_errors, stats  # noqa: E402


def load_block(spec: str, flag: str, score: str) -> dict:
  """``FILE:ARM`` -> that arm's per-seed scores (arms.json's layout), which must hold the bar's
  scores and ``score``."""
  path, sep, name = spec.rpartition(":")
  if not sep or not path or not name:
    raise config_errors.ConfigError(f"{flag}: {spec!r} is not FILE:ARM (e.g. arms.json:true)")
  if not os.path.exists(path):
    raise config_errors.ConfigError(f"{flag}: {path}: no such file")
  try:
    with open(path) as f:
      result = json.load(f)
  except json.JSONDecodeError as e:
    raise config_errors.ConfigError(f"{flag}: {path} is not JSON ({e}); give an arms.py or "
                                    "eval_actions.py output") from None
  arms = stored_arms(result)
  if name not in arms or not has_bar_scores(arms[name]):
    raise config_errors.ConfigError(
        f"{flag}: {path} has no arm {name!r} with the bar's per-seed scores; it has {sorted(arms)}")
  if "per_seed" not in arms[name].get(score, {}):
    raise config_errors.ConfigError(
        f"{flag}: {path}'s arm {name!r} has no per-seed {score!r}; pick another --score or file")
  return arms[name]


def per_seed(arm: dict, score: str) -> np.ndarray:
  return np.asarray(arm[score]["per_seed"], float)


def pooled_arm(arms: list) -> dict:
  """The blocks' per-seed scores of the bar, end to end, as one arm."""
  return {k: {"per_seed": np.concatenate([per_seed(x, k) for x in arms]).tolist()}
          for k in UPRIGHT_BAR}


def draw_share(numerator, denominator, seeds: int, bar: float, resamples: int,
               seed: int = 0) -> float:
  """The share of resampled ``seeds``-seed draws (each side drawn on its own, with replacement)
  whose IQM ratio is at least ``bar``."""
  rng = np.random.default_rng(seed)
  a = numerator[rng.integers(0, len(numerator), size=(resamples, seeds))]
  b = denominator[rng.integers(0, len(denominator), size=(resamples, seeds))]
  ratios = np.array([stats.iqm(x) / stats.iqm(y) for x, y in zip(a, b)])
  return float(np.mean(ratios >= bar))


def pooled_ratio(numerators, denominators, score: str = "gym_return", bar: float = 0.9,
                 draw_seeds: int = 8, resamples: int = 10_000) -> dict:
  if not numerators or len(numerators) != len(denominators):
    raise config_errors.ConfigError(
        f"--numerator and --denominator: give as many blocks to each (got {len(numerators)} "
        f"and {len(denominators)})")
  if score not in SCORES:
    raise config_errors.ConfigError(f"--score: one of {sorted(SCORES)}, got {score!r}")
  if draw_seeds < 1:
    raise config_errors.ConfigError(f"--draw-seeds: at least 1, got {draw_seeds}")
  blocks, num_arms, den_arms = [], [], []
  for n_spec, d_spec in zip(numerators, denominators):
    num, den = load_block(n_spec, "--numerator", score), load_block(d_spec, "--denominator", score)
    a, b = per_seed(num, score), per_seed(den, score)
    if len(a) != len(b):
      raise config_errors.ConfigError(
          f"--numerator {n_spec} has {len(a)} seeds and --denominator {d_spec} {len(b)}: a block "
          "pair must hold the same seeds")
    blocks.append({"numerator": n_spec, "denominator": d_spec, "n_seeds": len(a),
                   "numerator_iqm": stats.iqm(a), "denominator_iqm": stats.iqm(b),
                   "ratio": stats.ratio_ci(a, b, resamples=resamples)})
    num_arms.append(num)
    den_arms.append(den)
  a = np.concatenate([per_seed(x, score) for x in num_arms])
  b = np.concatenate([per_seed(x, score) for x in den_arms])
  return {"benchmark": "pooled_ratio", "score": score, "statistic": "IQM over seeds",
          "interval": "95% percentile bootstrap over seeds, each side resampled on its own",
          "blocks": blocks,
          "pooled": {"n_seeds": len(a),
                     "numerator": stats.summarize(a, resamples=resamples),
                     "denominator": stats.summarize(b, resamples=resamples),
                     "ratio": stats.ratio_ci(a, b, resamples=resamples),
                     "upright_bar": {"numerator": upright_bar(pooled_arm(num_arms)),
                                     "denominator": upright_bar(pooled_arm(den_arms))}},
          "draws": {"seeds": draw_seeds, "bar": bar, "resamples": resamples,
                    "share_reaching_bar": draw_share(a, b, draw_seeds, bar, resamples)}}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--numerator", nargs="+", default=[], metavar="FILE:ARM")
  p.add_argument("--denominator", nargs="+", default=[], metavar="FILE:ARM")
  p.add_argument("--score", default="gym_return", help="which per-seed score (default Gym-rules)")
  p.add_argument("--bar", type=float, default=0.9, help="the ratio a draw must reach")
  p.add_argument("--draw-seeds", type=int, default=8, help="seeds per simulated invocation")
  p.add_argument("--resamples", type=int, default=10_000)
  args = p.parse_args(argv)
  return config_errors.print_json_or_refuse(
      "pooled_ratio", lambda: pooled_ratio(args.numerator, args.denominator, args.score,
                                           args.bar, args.draw_seeds, args.resamples))


if __name__ == "__main__":
  sys.exit(main())
