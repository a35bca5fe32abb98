"""Where runs and envs sit: ``Layout.choose`` as a pure rule on (runs, envs, devices), and the
layout on 1, 2, 4 and 8 real XLA host devices (each count in its own process, since XLA fixes
the count when it starts)."""

import json
import os
import subprocess
import sys

import pytest

from rlhp_jax.layout import MIN_ENVS_PER_DEVICE, PARTITIONED_UPDATE_FROM, Layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shape(layout):
  return layout.kind, len(layout.devices)


@pytest.mark.parametrize("runs, envs, devices, want", [
    (1, 256, 8, ("envs", 8)),          # the largest split keeping 32 envs per device
    (1, 64, 8, ("envs", 2)),           # the main job on 2 or more cores
    (1, 32, 8, ("one device", 1)),
    (1, 512, 8, ("envs", 8)),
    (1, 192, 8, ("envs", 6)),
    (1, 96, 8, ("envs", 3)),
    (8, 8, 8, ("runs", 8)),
    (6, 8, 8, ("runs", 6)),
    (2, 256, 8, ("envs", 8)),          # whichever uses more devices
    (8, 256, 8, ("runs", 8)),          # runs on a tie
    (2, 8, 2, ("runs", 2)),
    (1, 64, 2, ("envs", 2)),
    (1, 8, 2, ("one device", 1)),      # too few envs to be worth splitting
    (3, 7, 2, ("one device", 1)),
    (16, 256, 1, ("one device", 1)),
])
def test_choose_is_a_pure_rule(runs, envs, devices, want):
  layout = Layout.choose(runs, envs, [f"d{i}" for i in range(devices)])
  assert shape(layout) == want
  assert layout.devices + layout.spare == tuple(f"d{i}" for i in range(devices))
  assert (MIN_ENVS_PER_DEVICE, PARTITIONED_UPDATE_FROM) == (32, 64)
  # an envs split below 64 per device gathers each rollout whole for the update
  per_device = envs // len(layout.devices)
  assert layout.gather_rollouts == (layout.kind == "envs" and per_device < 64)


def test_one_device_lays_nothing_out():
  layout = Layout.choose(3, 7, ["cpu:0"])
  assert layout.per_run is None and layout.state({"x": True}) is None
  assert layout.describe() == ""


CHILD = r"""
import json, sys
import rlhp_jax
import jax, jax.numpy as jnp, numpy as np
from rlhp_jax.layout import Layout
n = len(jax.devices())
out = {"devices": n, "choices": {}}
for runs, envs in [(1, 256), (1, 64), (8, 8), (2, 128)]:
  layout = Layout.choose(runs, envs, jax.devices())
  out["choices"][f"{runs}x{envs}"] = [layout.kind, len(layout.devices), len(layout.spare)]
# a stack of runs laid out and jitted: env leaves split, the rest per run or whole
for runs, envs in [(1, 256), (8, 64)]:
  layout = Layout.choose(runs, envs, jax.devices())
  tree = {"env": jnp.ones((runs, envs, 3)), "w": jnp.arange(runs * 5.0).reshape(runs, 5)}
  mask = {"env": True, "w": False}
  st = layout.state(mask)
  tree = layout.put(tree, st)
  step = layout.jit(lambda t: {"env": t["env"] * 2, "w": t["w"] + t["env"].sum((1, 2))[:, None]},
                    (st,), st)
  new = step(tree)
  assert float(new["env"].sum()) == 2 * runs * envs * 3
  np.testing.assert_allclose(np.asarray(new["w"])[:, 0], np.arange(runs) * 5 + envs * 3)
  out[f"placed {runs}x{envs}"] = len(new["env"].sharding.device_set)
# ``whole`` inside the jitted, vmapped step: a split of under 64 envs per device hands every
# device the whole batch (what PPO's update then runs on); other layouts leave it as it is
for runs, envs in [(1, 64), (1, 256), (8, 64)]:
  layout = Layout.choose(runs, envs, jax.devices())
  st = layout.state({"env": True})
  tree = layout.put({"env": jnp.ones((runs, envs, 3))}, st)
  whole = layout.jit(jax.vmap(lambda t: layout.whole(t["env"]) * 3), (st,), None)(tree)
  np.testing.assert_array_equal(np.asarray(whole), 3 * np.ones((runs, envs, 3)))
  out[f"whole {runs}x{envs}"] = [layout.gather_rollouts, len(whole.sharding.device_set),
                                 whole.sharding.is_fully_replicated]
if n == 8:
  # both drivers lay out the core's state: the external run's 256 envs go over 4 devices
  import dataclasses
  from rlhp_jax import core, experiment, loop
  cfg = experiment.load_experiment("experiments/hopper_synthetic.py")
  cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, num_envs=256),
                            run=dataclasses.replace(cfg.run, num_seeds=1))
  compiled = loop.compile_runs(core.RLHP(cfg), core.run_keys(cfg, 1)[:1])
  out["external"] = [compiled.layout.kind, len(compiled.layout.devices)]
  env_shardings = jax.tree.leaves(compiled.state_sharding.ppo.env_state)
  out["env_leaves_split"] = all(len(s.device_set) == 8 for s in env_shardings)
print("RESULT " + json.dumps(out))
"""


def run_with_devices(n: int) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(RLHP_JAX_HOST_DEVICES=str(n), JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (line,) = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  return json.loads(line[len("RESULT "):])


WANT = {  # (runs x envs) -> (kind, devices used) on n host devices
    1: {"1x256": ["one device", 1], "1x64": ["one device", 1], "8x8": ["one device", 1],
        "2x128": ["one device", 1]},
    2: {"1x256": ["envs", 2], "1x64": ["envs", 2], "8x8": ["runs", 2],
        "2x128": ["runs", 2]},
    4: {"1x256": ["envs", 4], "1x64": ["envs", 2], "8x8": ["runs", 4],
        "2x128": ["envs", 4]},
    8: {"1x256": ["envs", 8], "1x64": ["envs", 2], "8x8": ["runs", 8],
        "2x128": ["envs", 4]},
}


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_layout_on_host_devices(n):
  got = run_with_devices(n)
  assert got["devices"] == n
  assert {k: v[:2] for k, v in got["choices"].items()} == WANT[n]
  assert all(v[1] + v[2] == n for v in got["choices"].values())   # used + spare
  assert got["placed 1x256"] == WANT[n]["1x256"][1]
  assert got["placed 8x64"] == {1: 1, 2: 2, 4: 4, 8: 8}[n]
  if n == 1:
    assert all(not got[f"whole {k}"][0] for k in ("1x64", "1x256", "8x64"))
  else:
    assert got["whole 1x64"] == [True, 2, True]         # the main job: whole on both devices
    split = WANT[n]["1x256"][1]                         # 2: 128 per device, 8: 32
    assert got["whole 1x256"] == [256 // split < 64, split, 256 // split < 64]
    assert got["whole 8x64"] == [False, n, False]       # runs stay split: nothing gathered
  if n == 8:
    assert got["external"] == ["envs", 8] and got["env_leaves_split"]


def test_background_eval_compiles_at_once_on_the_spare_device_and_serves_the_final():
  """With a spare device the evaluation is compiled on a thread when the evaluator is made
  (beside the training step's compile, not when the first evaluation is due), every evaluation
  and the final one run the same executable there, and the rows match an in-line evaluation."""
  import jax
  import jax.numpy as jnp
  from rlhp_jax.layout import BackgroundEval
  if len(jax.devices()) < 2:
    pytest.skip("needs two host devices")
  layout = Layout.choose(1, 8, jax.devices())
  assert layout.spare
  evaluate_params = lambda params, keys: {"ret": params["w"].sum(-1) * keys.sum(-1)}
  evaluate = lambda state, keys: evaluate_params(state["params"], keys)
  state = {"params": {"w": jnp.ones((1, 3))}, "other": jnp.zeros((1, 5))}
  keys = jnp.full((1, 2), 2.0)
  ev = BackgroundEval(layout, jax.jit(evaluate), jax.jit(evaluate_params),
                      lambda s: s["params"], keys, lambda e: {"ret": e["ret"].tolist()}, state)
  executable = ev._compiling.result()            # compiled without any evaluation submitted
  assert executable is not None
  assert ev.submit(state, {"env_steps": 1}) == []
  state2 = {**state, "params": {"w": 2 * jnp.ones((1, 3))}}
  rows = ev.submit(state2, {"env_steps": 2}) + ev.wait()
  assert rows == [{"env_steps": 1, "ret": [12.0]}, {"env_steps": 2, "ret": [24.0]}]
  final = ev.final(state2)
  assert float(final["ret"][0]) == 24.0
  assert ev._compiling.result() is executable


def test_in_line_evaluation_is_compiled_at_once_and_its_seconds_counted():
  """Without a spare device (one device, or an envs split over all of them) the evaluation is
  still compiled on a thread when the evaluator is made; it then runs in line on the state's
  own devices, every time with that executable, and ``inline_s`` counts the seconds."""
  import jax
  import jax.numpy as jnp
  from rlhp_jax.layout import BackgroundEval
  layout = Layout.choose(1, 8, jax.devices()[:1])
  assert not layout.spare
  evaluate = jax.jit(lambda state, keys: {"ret": state["params"]["w"].sum(-1) * keys.sum(-1)})
  state = {"params": {"w": jnp.ones((1, 3))}, "other": jnp.zeros((1, 5))}
  keys = jnp.full((1, 2), 2.0)
  ev = BackgroundEval(layout, evaluate, None, lambda s: s["params"], keys,
                      lambda e: {"ret": e["ret"].tolist()}, state)
  executable = ev._compiling.result()            # compiled without any evaluation submitted
  assert executable is not None and ev.inline_s == 0.0
  assert ev.submit(state, {"env_steps": 1}) == [{"env_steps": 1, "ret": [12.0]}]
  state2 = {**state, "params": {"w": 2 * jnp.ones((1, 3))}}
  assert ev.submit(state2, {"env_steps": 2}) == [{"env_steps": 2, "ret": [24.0]}]
  assert ev.wait() == [] and ev.ready() == []
  after_two = ev.inline_s
  assert after_two > 0
  assert float(ev.final(state2)["ret"][0]) == 24.0
  assert ev.inline_s > after_two and ev._compiling.result() is executable
