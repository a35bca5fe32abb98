"""Full RLHP loop throughput (rollout + relabel + PPO + pair selection + teacher + reward-ensemble
training) with 1, 4 and 16 seeds vmapped in one compile. Prints one JSON object.

    python benchmarks/rlhp_loop.py            # CPU: 32 envs per seed
    python benchmarks/rlhp_loop.py --full     # the hopper_synthetic config (64 envs/seed)
    python benchmarks/rlhp_loop.py --full --seeds 1 --calls 8 --one-device
                                              # the same on the first device only

Figures per seed count: env steps/s summed over seeds, seconds per iteration, compile time, and
``wall_ratio_vs_1_seed`` (time per iteration relative to one seed; 16 seeds at <= 4x is the bar).
Runs are laid out over the backend's devices as training lays them out (``layout.Layout``: on
CPU one host device per core; a seed count that divides is split by seed, one seed by env batch).
``--one-device`` lays them on the first device only (training's layout before session 32 for
one seed of 64 envs: the other core idle but for background evaluations), for an A/B on one
machine in one invocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlhp_jax import core, experiment, loop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(cfg, n_seeds: int, calls: int, one_device: bool = False) -> dict:
  cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, num_seeds=n_seeds))
  system = core.RLHP(cfg)
  keys = core.run_keys(cfg, 1)
  # as training lays runs out, or on the first device only
  compiled = loop.compile_runs(system, keys, jax.devices()[:1] if one_device else None)
  layout, chunk = compiled.layout, compiled.chunk
  state = compiled.init(keys)
  teacher = layout.put(
      jax.tree.map(lambda x: jnp.repeat(x[None], n_seeds, 0), cfg.teacher.params()),
      layout.per_run)
  t0 = time.perf_counter()
  state, _ = jax.block_until_ready(chunk(state, teacher))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(calls):
    state, metrics = jax.block_until_ready(chunk(state, teacher))
  dt = (time.perf_counter() - t0) / (calls * cfg.run.iterations_per_call)
  return {"seeds": n_seeds, "split": layout.kind, "devices": len(layout.devices),
          "envs_per_seed": cfg.ppo.num_envs,
          "env_steps_per_s": n_seeds * system.iteration_env_steps / dt, "s_per_iteration": dt,
          "first_call_s": first,
          "labels_after": int(jnp.max(state.buffer.count))}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="GPU size: hopper_synthetic as configured")
  p.add_argument("--seeds", type=int, nargs="*", default=[1, 4, 16])
  p.add_argument("--calls", type=int, default=2, help="timed calls after the compile")
  p.add_argument("--one-device", action="store_true",
                 help="lay the runs on the first device only (no split)")
  args = p.parse_args()
  cfg = experiment.load_experiment(os.path.join(ROOT, "experiments", "hopper_synthetic.py"))
  if not args.full:
    cfg = dataclasses.replace(
        cfg, ppo=dataclasses.replace(cfg.ppo, num_envs=32, unroll_length=64, num_minibatches=4),
        prefs=dataclasses.replace(cfg.prefs, pairs_per_iteration=16),
        run=dataclasses.replace(cfg.run, total_env_steps=32 * 64 * 40, iterations_per_call=5))
  rows = [measure(cfg, n, args.calls, args.one_device) for n in args.seeds]
  base = rows[0]["s_per_iteration"]
  for r in rows:
    r["wall_ratio_vs_1_seed"] = r["s_per_iteration"] / base
  dev = jax.devices()[0]
  print(json.dumps({"benchmark": "rlhp_loop", "device": f"{dev.platform}:{dev.device_kind}",
                    "jax": jax.__version__, "config": "hopper_synthetic" + ("" if args.full
                                                                           else " (CPU size)"),
                    "iterations_per_call": cfg.run.iterations_per_call, "results": rows},
                   indent=1))


if __name__ == "__main__":
  main()
