"""Solver settings: their effect on speed and on learning, in one run. Trains PPO on gym-style
Hopper with the true reward (``experiments/hopper_ppo_true_reward.py``) once per constraint
solver setting, then evaluates every final policy under every setting. Prints one JSON object.

    python benchmarks/solver_settings.py                        # CPU: 1:4 vs 4:8, 1M env steps
    python benchmarks/solver_settings.py --steps 5000000        # the experiment's full budget
    python benchmarks/solver_settings.py --full                 # GPU: 1:4, 4:8, 100:50 at 5M

Figures per setting: training env steps/s and wall-clock, the deterministic eval return along
the way (``curve``: env steps -> return) and at the end, and the final policy's return under
each other setting (``transfer``): a policy that only exploits a cheap solver's errors loses
its return under 100:50 (MuJoCo's defaults), one that learned to hop keeps it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlhp_jax import experiment, jsonl, loop  # noqa: E402
from solver_transfer import evaluate_under, solver_config  # noqa: E402


def train_with(cfg, spec: str, out_dir: str) -> tuple[str, dict]:
  cfg = dataclasses.replace(cfg, name=f"solver-{spec.replace(':', '-')}",
                            env=solver_config(cfg.env, spec))
  run_dir = os.path.join(out_dir, cfg.name)
  os.makedirs(run_dir, exist_ok=True)
  experiment.save(cfg, os.path.join(run_dir, "config.json"))
  summary = loop.train(cfg, run_dir)  # progress lines go to stderr; stdout is for the JSON
  rows = jsonl.read(os.path.join(run_dir, "metrics.jsonl"))
  curve = [[r["env_steps"], r["eval/return"][0]] for r in rows if "eval/return" in r]
  timed = rows[1:]  # the first chunk includes the compile
  return run_dir, {"solver": spec, "env_steps": summary["env_steps"],
                   "wall_s": summary["wall_s"],
                   "train_env_steps_per_s": sum(r["steps_per_s"] for r in timed) / len(timed),
                   "final_eval_return": summary["eval_return_mean"], "curve": curve}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="GPU: 1:4, 4:8, 100:50 at 5M env steps")
  p.add_argument("--solver", nargs="*", default=None, help="settings to train with, ITER:LS")
  p.add_argument("--steps", type=int, default=None, help="env steps per training run")
  p.add_argument("--eval-every", type=int, default=None)
  p.add_argument("--out", default=None, help="keep the runs here (default: a temporary dir)")
  args = p.parse_args()
  logging.basicConfig(stream=sys.stderr, format="%(message)s", level=logging.INFO)
  solvers = args.solver or (["1:4", "4:8", "100:50"] if args.full else ["1:4", "4:8"])
  steps = args.steps or (5_000_000 if args.full else 1_000_000)
  cfg = experiment.load_experiment(os.path.join(ROOT, "experiments",
                                                "hopper_ppo_true_reward.py"))
  cfg = dataclasses.replace(cfg, run=dataclasses.replace(
      cfg.run, total_env_steps=steps, video=False,
      eval_every=args.eval_every or max(steps // 10, cfg.ppo.batch_size)))
  out_dir = args.out or tempfile.mkdtemp(prefix="rlhp-solver-")
  results = []
  for spec in solvers:
    run_dir, row = train_with(cfg, spec, out_dir)
    under = solvers if "100:50" in solvers else solvers + ["100:50"]
    row["transfer"] = {k: v["mean"] for k, v in
                       evaluate_under(run_dir, under)["eval_return"].items()}
    results.append(row)
    print(f"solver {spec}: {row['train_env_steps_per_s']:,.0f} env steps/s, final return "
          f"{row['final_eval_return']:.0f}, under others {row['transfer']}", file=sys.stderr)
  base = results[0]["train_env_steps_per_s"]
  for r in results:
    r["speed_vs_first"] = r["train_env_steps_per_s"] / base
  dev = jax.devices()[0]
  print(json.dumps({"benchmark": "solver_settings", "device": f"{dev.platform}:{dev.device_kind}",
                    "devices": len(jax.devices()), "jax": jax.__version__,
                    "experiment": "hopper_ppo_true_reward", "env_steps": steps,
                    "runs_dir": out_dir, "results": results}, indent=1))


if __name__ == "__main__":
  main()
