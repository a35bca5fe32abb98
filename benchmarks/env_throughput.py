"""Env throughput: MJX Hopper (jit(scan(vmap(step)))) at several batch sizes vs the C MuJoCo
engine on the same model, one thread. Prints one JSON object.

    python benchmarks/env_throughput.py                     # CPU, small sizes
    python benchmarks/env_throughput.py --full              # GPU sizes (up to 65536 envs)

Figures: env steps/s (one env step = frame_skip physics steps, with observation, reward,
termination and auto-reset), for each solver setting; ``ratio_mjx_best_over_c`` is MJX at its
best batch size divided by the C engine (mujoco.rollout, one thread, same solver settings).

On CPU the env batch is split over ``--host-devices`` XLA host devices (default: one per core),
one shard per core: XLA:CPU runs one program's small, loop-heavy MJX kernels mostly on one
thread, so a single device leaves the second core of a 2-core machine largely idle (measured:
18 k env steps/s on one device, 39 k on two, at 256 envs). ``--host-devices 1`` gives the one-device
figure. GPUs ignore the setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="GPU sizes")
  p.add_argument("--batches", type=int, nargs="*", default=None)
  p.add_argument("--steps", type=int, default=None, help="env steps per env per timed call")
  p.add_argument("--solver", type=str, nargs="*", default=None,
                 help="solver settings as ITER:LS (default 1:4 4:8, plus 100:50 on --full)")
  p.add_argument("--euler-damping", choices=["on", "off", "both"], default="on")
  p.add_argument("--host-devices", type=int, default=os.cpu_count() or 1,
                 help="XLA CPU devices the env batch is split over (default: one per core)")
  return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # must precede the first jax import: the CPU backend reads it at start
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={ARGS.host_devices}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402
from mujoco import rollout as mj_rollout  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlhp_jax.envs import hopper  # noqa: E402


def batch_sharding() -> NamedSharding:
  """The env batch split over every device of the default backend (one GPU: no split)."""
  return NamedSharding(Mesh(np.array(jax.devices()), ("envs",)), PartitionSpec("envs"))


def mjx_steps_per_s(env: hopper.Hopper, batch: int, steps: int, repeats: int = 3) -> dict:
  shard = batch_sharding()

  def run(states, key):
    def body(state, k):
      action = jax.random.uniform(k, (batch, 3), minval=-1.0, maxval=1.0)
      nxt = jax.vmap(env.step)(state, action)
      return jax.vmap(env.auto_reset)(nxt), None
    return jax.lax.scan(body, states, jax.random.split(key, steps))[0]

  run = jax.jit(run, in_shardings=(shard, None), out_shardings=shard)
  states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
  states = jax.device_put(states, shard)
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


def c_engine_steps_per_s(cfg: hopper.HopperConfig, env_steps: int, repeats: int = 3) -> dict:
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
  dt = float("inf")
  for _ in range(repeats):  # best of several, as for MJX: the figure a quiet core gives
    t0 = time.perf_counter()
    mj_rollout.rollout(model, data, state0, ctrl)
    dt = min(dt, time.perf_counter() - t0)
  return {"env_steps_per_s": env_steps / dt, "physics_steps_per_s": nstep / dt, "threads": 1,
          "repeats": repeats}


def main(args):
  devices = jax.devices()
  n_dev = len(devices)
  batches = args.batches or ([1024, 4096, 16384, 65536] if args.full else [128, 256, 1024])
  bad = [b for b in batches if b % n_dev]
  if bad:
    sys.exit(f"env_throughput: --batches {bad} must be multiples of the {n_dev} devices; "
             f"pass other sizes or --host-devices 1")
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
      print(f"solver {spec}: MJX best {best['env_steps_per_s']:,.0f} env steps/s "
            f"(batch {best['batch']}), C engine {c['env_steps_per_s']:,.0f}", file=sys.stderr)
  dev = devices[0]
  print(json.dumps({"benchmark": "env_throughput", "device": f"{dev.platform}:{dev.device_kind}",
                    "devices": n_dev, "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "jax": jax.__version__, "mujoco": mujoco.__version__,
                    "steps_per_call": steps, "results": results}, indent=1))


if __name__ == "__main__":
  main(ARGS)
