"""Env throughput: MJX Hopper (jit(scan(vmap(step)))) at several batch sizes vs the C MuJoCo
engine on the same model, one thread. Prints one JSON object.

    python benchmarks/env_throughput.py                     # CPU, small sizes
    python benchmarks/env_throughput.py --full              # GPU sizes (up to 65536 envs)

Figures: env steps/s (one env step = frame_skip physics steps, with observation, reward,
termination and auto-reset), for each solver setting; ``ratio_mjx_best_over_c`` is MJX at its
best batch size divided by the C engine (mujoco.rollout, one thread, same solver settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import platform
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlhp_jax.envs import hopper  # noqa: E402


def mjx_steps_per_s(env: hopper.Hopper, batch: int, steps: int, repeats: int = 2) -> dict:
  @jax.jit
  def run(states, key):
    def body(state, k):
      action = jax.random.uniform(k, (batch, 3), minval=-1.0, maxval=1.0)
      nxt = jax.vmap(env.step)(state, action)
      return jax.vmap(env.auto_reset)(nxt), None
    return jax.lax.scan(body, states, jax.random.split(key, steps))[0]

  states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
  t0 = time.perf_counter()
  states = jax.block_until_ready(run(states, jax.random.PRNGKey(1)))
  compile_s = time.perf_counter() - t0
  best = float("inf")
  for r in range(repeats):
    t0 = time.perf_counter()
    states = jax.block_until_ready(run(states, jax.random.PRNGKey(2 + r)))
    best = min(best, time.perf_counter() - t0)
  finite = bool(jnp.isfinite(states.data.qpos).all())
  return {"batch": batch, "env_steps_per_s": batch * steps / best,
          "first_call_s": compile_s, "finite": finite}


def c_engine_steps_per_s(cfg: hopper.HopperConfig, env_steps: int) -> dict:
  """mujoco.rollout on one MjData (one thread): physics steps with random controls."""
  model = hopper.load_model(cfg)
  data = mujoco.MjData(model)
  nstep = env_steps * cfg.frame_skip
  rng = np.random.default_rng(0)
  ctrl = np.repeat(rng.uniform(-1, 1, (env_steps, 1, model.nu)), cfg.frame_skip, axis=1)
  ctrl = ctrl.reshape(1, nstep, model.nu)
  state0 = np.zeros((1, mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)))
  mujoco.mj_getState(model, data, state0[0], mujoco.mjtState.mjSTATE_FULLPHYSICS)
  mj_rollout.rollout(model, data, state0, ctrl[:, :10])  # warm-up
  t0 = time.perf_counter()
  mj_rollout.rollout(model, data, state0, ctrl)
  dt = time.perf_counter() - t0
  return {"env_steps_per_s": env_steps / dt, "physics_steps_per_s": nstep / dt, "threads": 1}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="GPU sizes")
  p.add_argument("--batches", type=int, nargs="*", default=None)
  p.add_argument("--steps", type=int, default=None, help="env steps per env per timed call")
  p.add_argument("--solver", type=str, nargs="*", default=None,
                 help="solver settings as ITER:LS (default 1:4 4:8, plus 100:50 on --full)")
  p.add_argument("--euler-damping", choices=["on", "off", "both"], default="both")
  args = p.parse_args()
  batches = args.batches or ([1024, 4096, 16384, 65536] if args.full else [256, 1024, 4096])
  steps = args.steps or (200 if args.full else 50)
  solvers = args.solver or (["1:4", "4:8", "100:50"] if args.full else ["1:4", "4:8"])
  damping = {"on": [True], "off": [False], "both": [True, False]}[args.euler_damping]
  results = []
  for spec in solvers:
    it, ls = (int(x) for x in spec.split(":"))
    for damp in damping:
      cfg = hopper.HopperConfig(solver_iterations=it, ls_iterations=ls, euler_damping=damp)
      env = hopper.Hopper(cfg)
      c = c_engine_steps_per_s(cfg, 20_000)
      mjx_rows = [mjx_steps_per_s(env, b, steps) for b in batches]
      best = max(mjx_rows, key=lambda r: r["env_steps_per_s"])
      results.append({"solver_iterations": it, "ls_iterations": ls, "euler_damping": damp,
                      "c_engine": c, "mjx": mjx_rows, "mjx_best_batch": best["batch"],
                      "ratio_mjx_best_over_c": best["env_steps_per_s"] / c["env_steps_per_s"]})
  dev = jax.devices()[0]
  print(json.dumps({"benchmark": "env_throughput", "device": f"{dev.platform}:{dev.device_kind}",
                    "cpu": platform.processor() or platform.machine(),
                    "jax": jax.__version__, "mujoco": mujoco.__version__,
                    "steps_per_call": steps, "results": results}, indent=1))


if __name__ == "__main__":
  main()
