"""Preferences against the true reward, seeds as the unit: three arms of the main job, each with
N seeds vmapped in one compile, reported as IQM and 95% bootstrap intervals over seeds.

    python benchmarks/arms.py                       # 8 seeds per arm, the main job's budget
    python benchmarks/arms.py --seeds 2 --total-env-steps 65536 --tiny    # smoke test
    python benchmarks/arms.py --arms true --experiment experiments/X.py --first-seed 8  # seeds 8-15

Arms (``reward_source``):
  * ``preferences``: PPO on the reward ensemble fitted to the synthetic teacher's labels;
  * ``true``: PPO on the task's own reward (fixed-horizon hop forward with the unhealthy
    penalty), the same PPO;
  * ``true_normalized``: the task reward through exactly the learned reward's normalisation
    (zero mean, unit std under running statistics), isolating what the normalisation costs.

For every arm: the final deterministic evaluation per seed (10 episodes of 1000 steps) scored as
the return under Gym's termination rules, the seals-style return (what imitation reports), the
task's own return, the healthy-step fraction (mean and worst episode) and the forward speed;
IQM with a 95% bootstrap interval over seeds; the preference arm's IQM ratio to the true-reward
arm with its interval; and the share of seeds that meet the main job's bar for an upright hop
(``UPRIGHT_BAR``: what issue 10 asks of the main job's one seed) with its Wilson interval. Writes ``arms_curves.png`` (Gym-rules and seals-style return against env
steps, IQM with the bootstrap band per arm) and ``arms.json`` into ``--out`` and prints the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlhp_jax import compile_cache, config_errors, experiment, loop, report, stats  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = ("preferences", "true", "true_normalized")
SCORES = {"gym_return": "eval_gym_return_per_run", "seals_return": "eval_seals_return_per_run",
          "task_return": "eval_return_per_run",
          "healthy_fraction": "eval_healthy_fraction_per_run",
          "healthy_fraction_worst_episode": "eval_healthy_fraction_min_per_run",
          "forward_speed": "eval_forward_speed_per_run",
          "gym_length": "eval_gym_length_per_run",
          "gym_length_worst_episode": "eval_gym_length_min_per_run"}
UPRIGHT_BAR = {"gym_return": 2500.0, "seals_return": 3000.0,
               "healthy_fraction_worst_episode": 0.9}
"""The main job's bar for one seed's final policy (issue 10): Gym-rules return (mean of the
evaluation episodes) >= 2500, seals-style return >= 3000 and the healthy-step fraction >= 0.9 in
every evaluation episode. Per seed it is pass or fail, so an arm reports the share that passes."""
TINY = dict(env=dict(episode_length=50), ppo=dict(num_envs=8, unroll_length=16,
                                                   num_minibatches=2, num_epochs=2),
            prefs=dict(fragment_length=8, total_labels=24, pairs_per_iteration=4, oversample=4,
                       rollouts_per_iteration=1),
            reward=dict(ensemble_size=2, steps_per_iteration=4, batch_size=8),
            run=dict(iterations_per_call=2, eval_episodes=2, eval_episode_length=50))
TINY_STEPS = 1024
"""Env steps per seed of a --tiny smoke test (8 iterations of 128) unless --total-env-steps."""


def arm_config(base, arm: str, seeds: int, total: int | None, tiny: bool,
               first_seed: int | None = None):
  cfg = base
  if tiny:
    cfg = dataclasses.replace(cfg, **{
        section: dataclasses.replace(getattr(cfg, section), **fields)
        for section, fields in TINY.items()})
  steps = total or (TINY_STEPS if tiny else cfg.run.total_env_steps)
  run = dataclasses.replace(cfg.run, num_seeds=seeds, video=False, total_env_steps=steps,
                            seed=cfg.run.seed if first_seed is None else first_seed)
  return dataclasses.replace(cfg, name=f"{cfg.name}_{arm}", reward_source=arm, run=run)


def upright_bar(arm: dict) -> dict:
  """The share of an arm's seeds meeting ``UPRIGHT_BAR`` (Wilson 95% interval), from the arm's
  per-seed scores as arms.json stores them; works on every stored arms.json since session 5."""
  scores = [np.asarray(arm[name]["per_seed"], float) for name in UPRIGHT_BAR]
  passed = np.all([x >= UPRIGHT_BAR[name] for name, x in zip(UPRIGHT_BAR, scores)], axis=0)
  return {"bar": UPRIGHT_BAR, **stats.share_ci(passed)}


def eval_curve(rows, key):
  """(env steps [P], per-seed values [P, S]) of the evaluation rows."""
  pts = [(r["env_steps"], r[key]) for r in rows if key in r]
  return np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)


def plot(curves: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
  for ax, key, title in ((axes[0], "eval/gym_return", "return under Gym's termination rules"),
                         (axes[1], "eval/seals_return", "seals-style return (1000 steps)")):
    for arm, rows in curves.items():
      xs, ys = eval_curve(rows, key)
      if not len(xs):
        continue
      mid = np.array([stats.iqm(y) for y in ys])
      band = np.array([stats.bootstrap_ci(y, resamples=1000) for y in ys])
      line, = ax.plot(xs, mid, lw=2, label=f"{arm} (IQM of {ys.shape[1]} seeds)")
      ax.fill_between(xs, band[:, 0], band[:, 1], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_title(title)
    ax.set_xlabel("env steps")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("return (band: 95% bootstrap interval over seeds)")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--experiment", default=os.path.join(ROOT, "experiments", "hopper_synthetic.py"))
  p.add_argument("--seeds", type=int, default=8)
  p.add_argument("--first-seed", type=int, default=None,
                 help="the arms run seeds N..N+seeds-1 (default: the experiment's run.seed), "
                      "so a block of seeds is drawn from the committed config")
  p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
  p.add_argument("--total-env-steps", type=int, default=None,
                 help="per seed (default: the experiment's budget)")
  p.add_argument("--out", default=None, help="folder for arms.json and arms_curves.png")
  p.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test)")
  args = p.parse_args(argv)
  logging.basicConfig(stream=sys.stderr, format="%(message)s", level=logging.INFO)

  def compute():
    # every arm's config is accepted before anything is written
    base = experiment.load_experiment(args.experiment)
    configs = {arm: arm_config(base, arm, args.seeds, args.total_env_steps, args.tiny,
                               args.first_seed) for arm in args.arms}
    compile_cache.enable()
    out = args.out or tempfile.mkdtemp(prefix="rlhp-arms-")
    os.makedirs(out, exist_ok=True)
    result = {"benchmark": "arms", "experiment": base.name, "seeds_per_arm": args.seeds,
              "eval_action": base.run.eval_action,
              "returns": "final deterministic evaluation, 10 episodes x 1000 steps per seed; "
                         "gym_return: Gym's reward until the first unhealthy step; seals_return: "
                         "forward + 1 per healthy step - 1e-3|a|^2 over 1000 steps; task_return: "
                         "the fixed-horizon task's own return; gym_length: the step at which Gym's "
                         "rules would end the episode (its first unhealthy step, 1000 if none)",
              "arms": {}}
    curves = {}
    for arm in args.arms:
      cfg = configs[arm]
      run_dir = os.path.join(out, arm)
      os.makedirs(run_dir, exist_ok=True)
      experiment.save(cfg, os.path.join(run_dir, "config.json"))  # beside every run, as train does
      t0 = time.perf_counter()
      summary = loop.train(cfg, run_dir)    # progress lines go to stderr: stdout is the JSON
      wall = time.perf_counter() - t0
      rows = report.MetricsLog(run_dir).rows
      curves[arm] = rows
      result["arms"][arm] = {
          "wall_s": wall, "env_steps_per_seed": summary["env_steps"],
          "labels_per_seed": summary["labels_per_run"],
          "equal_labels_per_seed": summary["equal_labels_per_run"],
          "nonfinite_seeds": summary.get("nonfinite_runs", []),
          **{name: stats.summarize(summary[key]) for name, key in SCORES.items()}}
      result["arms"][arm]["upright_bar"] = upright_bar(result["arms"][arm])
    for name in ("gym_return", "seals_return"):
      if {"preferences", "true"} <= set(result["arms"]):
        result[f"preferences_over_true_{name}"] = stats.ratio_ci(
            result["arms"]["preferences"][name]["per_seed"],
            result["arms"]["true"][name]["per_seed"])
    plot(curves, os.path.join(out, "arms_curves.png"))
    result["out"] = out
    with open(os.path.join(out, "arms.json"), "w") as f:
      json.dump(result, f, indent=1)
    return result

  return config_errors.print_json_or_refuse("arms", compute)


if __name__ == "__main__":
  sys.exit(main())
