"""How often does one seed meet the main job's bar? The share of seeds per stored arm, with
Wilson intervals, from results already on disk (no training).

    python benchmarks/bar_rates.py                # every stored arms_*.json and eval_actions_*.json
    python benchmarks/bar_rates.py A/arms.json B/eval_actions.json   # named files
    python benchmarks/bar_rates.py --runs runs/hopper_synthetic-*   # single runs, pooled

The main job's bar (issue 10; ``arms.UPRIGHT_BAR``) is asked of one seed, but each seed's final
policy passes or fails it: a draw with some probability. Here every stored arm (8 seeds, one
``arms.py`` invocation each) is scored seed by seed, and ``--runs`` pools the ``summary.json`` of
single runs (the main job run as a user runs it, one ``--run.seed`` per command) into one row,
naming each score's seed (``seeds``, from the ``config.json`` saved beside the run).
An ``eval_actions.py`` file gives one row per evaluation rule (the same checkpoints re-scored).
Prints JSON: per arm, the share meeting the whole bar and the share with Gym-rules >= 2500 alone,
each with its 95% Wilson interval, the Gym-rules IQM with its bootstrap interval, and the arm's
env steps per seed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from arms import SCORES, UPRIGHT_BAR, upright_bar  # noqa: E402
from rlhp_jax import config_errors, stats  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def arm_row(arm: dict) -> dict:
  """One arm's shares from its per-seed scores (arms.json's layout)."""
  gym = np.asarray(arm["gym_return"]["per_seed"], float)
  return {"upright_bar": upright_bar(arm),
          "gym_return_2500": stats.share_ci(gym >= UPRIGHT_BAR["gym_return"]),
          "gym_return": stats.summarize(gym),
          "env_steps_per_seed": arm.get("env_steps_per_seed")}


def stored_arms(result: dict) -> dict:
  """{name: per-seed scores} of an arms.py JSON (its arms) or an eval_actions.py JSON (its
  rules, each the same checkpoints re-scored)."""
  if result.get("benchmark") == "eval_actions":
    return dict(result.get("rules", {}))
  return dict(result.get("arms", {}))


def has_bar_scores(arm: dict) -> bool:
  """Whether an arm stores every per-seed score the bar needs (the oldest files do not)."""
  return all(isinstance(arm.get(k), dict) and "per_seed" in arm[k] for k in UPRIGHT_BAR)


def file_rows(path: str) -> dict:
  """Rows of an arms.json (one per arm) or an eval_actions.py JSON (one per rule); arms without
  the per-seed scores the bar needs are left out."""
  with open(path) as f:
    result = json.load(f)
  by_rule = result.get("benchmark") == "eval_actions"
  return {name: {**arm_row(arm), "eval_action": name if by_rule else result.get("eval_action")}
          for name, arm in stored_arms(result).items() if has_bar_scores(arm)}


def single_runs_row(run_dirs) -> dict:
  """Pool single runs (one seed each, or a few) into one arm from their summary.json files."""
  per_seed = {name: [] for name in SCORES}
  names, seeds, steps = [], [], set()
  for d in run_dirs:
    path = os.path.join(d, "summary.json")
    if not os.path.exists(path):
      raise config_errors.ConfigError(f"--runs: {d} has no summary.json (is the run finished?)")
    with open(path) as f:
      summary = json.load(f)
    for name, key in SCORES.items():
      per_seed[name] += np.ravel(summary[key]).astype(float).tolist()
    names.append(os.path.basename(os.path.normpath(d)))
    seeds += run_seeds(d, np.size(summary[SCORES["gym_return"]]))
    steps.add(summary["env_steps"])
  arm = {name: {"per_seed": v} for name, v in per_seed.items()}
  arm["env_steps_per_seed"] = steps.pop() if len(steps) == 1 else sorted(steps)
  return {**arm_row(arm), "runs": names, "seeds": seeds,
          "per_seed": {name: per_seed[name] for name in UPRIGHT_BAR}}


def run_seeds(run_dir: str, n: int) -> list:
  """The seeds of a run's ``n`` per-run scores, from the ``config.json`` saved beside it: runs
  are teacher settings x seeds, seeds ``run.seed`` onward repeating per teacher (as
  ``core.run_keys`` stacks them); None each where the file or field is missing."""
  try:
    with open(os.path.join(run_dir, "config.json")) as f:
      run = json.load(f)["run"]
    first, num_seeds = int(run["seed"]), int(run.get("num_seeds", n)) or n
  except (OSError, ValueError, KeyError, TypeError):
    return [None] * n
  return [first + i % num_seeds for i in range(n)]


def bar_rates(files, run_dirs) -> dict:
  """Every arm of the named files, and the named runs pooled (no names: the stored results)."""
  if not files and not run_dirs:
    files = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "results", "arms_*.json"))
                   + glob.glob(os.path.join(ROOT, "benchmarks", "results", "eval_actions_*.json")))
  out = {"benchmark": "bar_rates", "bar": UPRIGHT_BAR,
         "interval": "95% Wilson score interval over seeds", "arms": {}}
  for path in files:
    if not os.path.exists(path):
      raise config_errors.ConfigError(f"{path}: no such file")
    for arm, row in file_rows(path).items():
      out["arms"][f"{os.path.basename(path)}:{arm}"] = row
  if run_dirs:
    out["arms"]["single runs"] = single_runs_row(run_dirs)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("arms_files", nargs="*", help="arms.json files (default: the stored ones)")
  p.add_argument("--runs", nargs="+", default=[], help="single run directories, pooled")
  args = p.parse_args(argv)
  return config_errors.print_json_or_refuse(
      "bar_rates", lambda: bar_rates(args.arms_files, args.runs))


if __name__ == "__main__":
  sys.exit(main())
