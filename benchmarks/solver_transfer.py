"""Solver settings and learning: does a policy trained with a cheap constraint solver still work
under a more accurate one? Evaluates the final policy of each given run (deterministic, true
return) under several solver settings and prints one JSON object.

    python benchmarks/solver_transfer.py runs/hopper_ppo_true_reward-A runs/... \\
        --solver 1:4 4:8 100:50

A policy that only exploits the cheap solver's errors would lose its return under 100:50
(MuJoCo's defaults); one that learned the task keeps it. Pair it with the run's own metrics
(``metrics.jsonl``: eval return against env steps) to compare learning speed across settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlhp_jax import checkpoint, core, ppo  # noqa: E402
from rlhp_jax.envs import hopper  # noqa: E402


def final_policy(run_dir: str):
  """(config, agent, params of run 0) from a run directory's last checkpoint."""
  cfg, step, state = checkpoint.restore_run(run_dir)
  system = core.RLHP(cfg)
  n_runs = cfg.run.num_seeds * max(1, len(cfg.teachers))
  params = jax.tree.map(lambda x: x[0], state.ppo.params)
  return cfg, system.agent, params, int(np.asarray(state.ppo.env_steps)[0]), n_runs


def solver_config(env_cfg: hopper.HopperConfig, spec: str) -> hopper.HopperConfig:
  """``env_cfg`` with the solver setting ``spec`` ("ITER:LS", e.g. "4:8")."""
  it, ls = (int(x) for x in spec.split(":"))
  return dataclasses.replace(env_cfg, solver_iterations=it, ls_iterations=ls)


def evaluate_under(run_dir: str, solvers, episodes: int | None = None) -> dict:
  """The final policy of ``run_dir`` evaluated under each solver setting ("ITER:LS")."""
  cfg, agent, params, steps, n_runs = final_policy(run_dir)
  episodes = episodes or cfg.run.eval_episodes
  # the key of the run's own final evaluation, so the training setting reproduces
  # summary.json's first eval return
  key = core.eval_keys(cfg, n_runs)[0]
  row = {"run": os.path.basename(run_dir.rstrip("/")), "env_steps": steps,
         "episodes": episodes,
         "trained_solver": f"{cfg.env.solver_iterations}:{cfg.env.ls_iterations}",
         "eval_return": {}}
  for spec in solvers:
    env = hopper.Hopper(solver_config(cfg.env, spec))
    t0 = time.perf_counter()
    ev = jax.jit(lambda k: ppo.evaluate(agent, env, params, k, episodes,
                                        cfg.run.eval_episode_length))(key)
    returns, lengths = ev.task_return, ev.alive.sum(0)
    row["eval_return"][spec] = {"mean": float(np.mean(returns)), "std": float(np.std(returns)),
                                "mean_length": float(np.mean(lengths)),
                                "gym_return": float(np.mean(ev.gym_return)),
                                "seals_return": float(np.mean(ev.seals_return)),
                                "healthy_fraction": float(np.mean(ev.healthy_fraction)),
                                "seconds": time.perf_counter() - t0}
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("runs", nargs="+", help="run directories made by 'rlhp-jax train'")
  p.add_argument("--solver", nargs="*", default=["1:4", "4:8", "100:50"],
                 help="solver settings to evaluate under, as ITER:LS")
  p.add_argument("--episodes", type=int, default=None,
                 help="evaluation episodes (default: the run's own run.eval_episodes)")
  args = p.parse_args()
  rows = [evaluate_under(r, args.solver, args.episodes) for r in args.runs]
  dev = jax.devices()[0]
  print(json.dumps({"benchmark": "solver_transfer", "device": f"{dev.platform}:{dev.device_kind}",
                    "results": rows}, indent=1))


if __name__ == "__main__":
  main()
