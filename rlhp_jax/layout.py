"""Where runs and their envs sit on the backend's devices, and the host-device setup.

XLA:CPU runs one program's small, loop-heavy kernels (MJX's solver, the PPO scans) mostly on one
thread, so ``host_devices`` makes one XLA host device per core and a ``Layout`` spreads a stack of
runs over them; on a host with several GPUs the same layout spreads runs over the GPUs. The
layout knows the runs axis and, through a mask the caller gives, which leaves carry an env
batch; nothing else of the state. Both drivers use it (the external one with one run).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

MIN_ENVS_PER_DEVICE = 32
"""A run's env batch is split over devices only if each device gets at least this many envs.
Measured on 2 cores with the main job (64 envs, session 32): 2.27 s per 4-iteration chunk split
with the update whole on each device, 2.78 s split with the update partitioned, 5.10 s on one
device; 16 envs per device (32 split, update partitioned) ran at 0.6x in session 2."""

PARTITIONED_UPDATE_FROM = 64
"""With an envs split of at least this many envs per device, everything after the rollout
(rewards, PPO's update, queries, the reward ensemble) is partitioned over the devices as XLA
lays it out; below it, each rollout is gathered whole onto every device (``Layout.whole``) and
the rest runs whole on each. Measured on 2 cores (session 32, s per chunk, whole /
partitioned): the main job, 32 envs per device, 2.27 / 2.78; the backflip, 256 per device,
14.35 / 12.96. Splits of 64 or more per device are laid out as before session 32."""


def host_devices() -> None:
  """Sets ``XLA_FLAGS`` before the CPU backend starts (``rlhp_jax``'s ``__init__`` calls it):

  * one XLA host device per core (``RLHP_JAX_HOST_DEVICES`` or an explicit
    ``--xla_force_host_platform_device_count`` overrides the count). Measured on 2 cores: MJX
    Hopper 18 k env steps/s on one device, 39 k split over two; the main job's iteration
    1.97 s on one device, 1.30 s split;
  * XNNPACK off: XLA:CPU deadlocks on small machines (seen on 2 cores, jaxlib 0.10) when an
    XNNPACK-fused dot runs inside a while loop (MJX's solver, our scans) and waits for the same
    intra-op thread pool that runs the loop. GPU/TPU ignore both flags.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_use_xnnpack" not in flags:
    flags += " --xla_cpu_use_xnnpack=false"
  if "xla_force_host_platform_device_count" not in flags:
    count = os.environ.get("RLHP_JAX_HOST_DEVICES") or str(os.cpu_count() or 1)
    flags += f" --xla_force_host_platform_device_count={count}"
  os.environ["XLA_FLAGS"] = flags.strip()


def _largest_split(n: int, devices: int, at_least: int = 1) -> int:
  """The largest d <= devices dividing n with n // d >= at_least (1 if none)."""
  return max([d for d in range(1, devices + 1) if n % d == 0 and n // d >= at_least] or [1])


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a stack of runs ([runs, ...] leaves) lies on ``devices``; ``spare`` are the devices it
  leaves idle (background evaluation runs there).

  * ``"runs"``: the runs axis (seeds x teacher settings) is split; runs never talk to each
    other, so each device runs its share.
  * ``"envs"``: each run's env batch is split, with at least ``MIN_ENVS_PER_DEVICE`` envs per
    device; the rollouts run in parallel. With fewer than ``PARTITIONED_UPDATE_FROM`` per
    device (``gather_rollouts``), ``whole`` gathers each rollout onto every device and the rest
    of the iteration (rewards, PPO's update, queries, the reward ensemble) runs whole on each,
    as on one device: no partitioned sums, no collectives inside the update's scans. With more,
    the update is partitioned too (XLA inserts the gathers).
  * ``"one device"``: nothing splits evenly, or there is one device.
  """

  kind: str
  devices: tuple
  spare: tuple = ()
  gather_rollouts: bool = False

  @classmethod
  def choose(cls, num_runs: int, num_envs: int, devices: Sequence[Any]) -> "Layout":
    """The largest split of the runs, or of the envs keeping ``MIN_ENVS_PER_DEVICE`` per
    device, whichever uses more devices (runs on a tie). Pure: ``devices`` may be any list."""
    devices = tuple(devices)
    by_runs = _largest_split(num_runs, len(devices))
    by_envs = _largest_split(num_envs, len(devices), MIN_ENVS_PER_DEVICE)
    if by_runs > 1 and by_runs >= by_envs:
      return cls("runs", devices[:by_runs], devices[by_runs:])
    if by_envs > 1:
      return cls("envs", devices[:by_envs], devices[by_envs:],
                 gather_rollouts=num_envs // by_envs < PARTITIONED_UPDATE_FROM)
    return cls("one device", devices[:1], devices[1:])

  @property
  def split(self) -> bool:
    return len(self.devices) > 1

  def _mesh(self):
    import numpy as np
    from jax.sharding import Mesh
    return Mesh(np.array(self.devices), (self.kind,))

  @property
  def per_run(self):
    """The sharding of per-run arrays ([runs, ...]: keys, teacher parameters, metrics,
    queries), or None on one device."""
    from jax.sharding import NamedSharding, PartitionSpec
    if not self.split:
      return None
    return NamedSharding(self._mesh(),
                         PartitionSpec("runs") if self.kind == "runs" else PartitionSpec())

  def state(self, env_batched):
    """Shardings of a run stack shaped like ``env_batched`` (a pytree of bools: True for
    leaves [runs, envs, ...]), or None on one device."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    if not self.split:
      return None
    if self.kind == "runs":
      return jax.tree.map(lambda _: self.per_run, env_batched)
    mesh = self._mesh()
    envs, whole = (NamedSharding(mesh, PartitionSpec(None, "envs")),
                   NamedSharding(mesh, PartitionSpec()))
    return jax.tree.map(lambda batched: envs if batched else whole, env_batched)

  def whole(self, tree):
    """Inside a jitted function: ``tree`` placed whole on every device where the layout gathers
    rollouts (the rollout's transitions, so the update is not partitioned); unchanged
    otherwise. Runs inside ``vmap`` over runs (an envs split never splits the runs axis)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    if not self.gather_rollouts:
      return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(self._mesh(), PartitionSpec()))

  def jit(self, fn, in_shardings, out_shardings):
    import jax
    if not self.split:
      return jax.jit(fn)
    return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings)

  @staticmethod
  def put(tree, sharding):
    import jax
    return tree if sharding is None else jax.device_put(tree, sharding)

  def describe(self) -> str:
    return f", {self.kind} split over {len(self.devices)} devices" if self.split else ""


class BackgroundEval:
  """Evaluates the policy while training goes on. A 1000-step evaluation is a long chain of
  small sequential steps (about as long as several training chunks on CPU); when the layout
  leaves a device idle (XLA:CPU: a spare core) the policy's parameters are copied there and
  evaluated asynchronously, and the result becomes a row of its own once it is ready. Without
  a spare device it evaluates in line and counts the seconds that took (``inline_s``). Rows
  carry the stamp (chunk, env steps, ``wall_s``, ``time``, ``eval_s``: in-line evaluation
  seconds before it) of the moment the evaluated policy existed, so curves against wall-clock
  need not count evaluation as training time.

  ``evaluate(state, keys)`` and ``evaluate_params(params, keys)`` return evaluations with a
  leading runs axis; ``params_of(state)`` picks the policy's parameters; ``to_row(ev)`` makes
  the row's metrics. ``state`` (any state of the run, for its shapes and placement) starts
  compiling the evaluation on a thread of its own at once, beside the training step's compile
  (XLA:CPU compiles a program on one core), and every evaluation, the final one included,
  runs that executable: on the spare device if there is one, else in line on the layout's
  devices (an envs split leaves none spare; the main job's in-line compile took 26 s of its
  run when it waited for the first evaluation)."""

  def __init__(self, layout: Layout, evaluate, evaluate_params, params_of, keys, to_row,
               state):
    import jax
    self.device = layout.spare[-1] if layout.spare else None
    self.keys, self.to_row, self.params_of = keys, to_row, params_of
    self.pending = None
    self.inline_s = 0.0
    """Seconds spent so far evaluating in line (no spare device): time the training waited."""
    if self.device is not None:
      self.keys = jax.device_put(jax.device_get(keys), self.device)
      placed = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                         sharding=jax.sharding.SingleDeviceSharding(self.device)),
          jax.eval_shape(params_of, state))
      self._compiling = _Compile(jax.jit(evaluate_params), placed, self.keys)
    else:
      self._compiling = _Compile(evaluate, _placed_like(state), keys)

  def _evaluate_on_spare(self, state):
    import jax
    params = jax.device_put(self.params_of(state), self.device)
    return self._compiling.result()(params, self.keys)

  def _evaluate_in_line(self, state):
    import time
    import jax
    t0 = time.perf_counter()
    ev = jax.device_get(self._compiling.result()(state, self.keys))
    self.inline_s += time.perf_counter() - t0
    return ev

  def submit(self, state, stamp: dict) -> list[dict]:
    """Starts evaluating ``state``'s policy; returns finished rows (in line: this one)."""
    if self.device is None:
      return [{**stamp, **self.to_row(self._evaluate_in_line(state))}]
    done = self.wait()
    self.pending = (stamp, self._evaluate_on_spare(state))
    return done

  def final(self, state):
    """Evaluates ``state``'s policy now and returns the evaluation (host arrays). A pending
    evaluation is dropped: ``wait()`` first to keep its row."""
    import jax
    if self.device is None:
      return self._evaluate_in_line(state)
    self.pending = None
    return jax.device_get(self._evaluate_on_spare(state))

  def ready(self) -> list[dict]:
    """The pending evaluation's row if it has finished, without waiting."""
    import jax
    if self.pending is None or not all(x.is_ready() for x in jax.tree.leaves(self.pending[1])):
      return []
    return self.wait()

  def wait(self) -> list[dict]:
    import jax
    if self.pending is None:
      return []
    stamp, ev = self.pending
    self.pending = None
    return [{**stamp, **self.to_row(jax.device_get(ev))}]


def _placed_like(tree):
  """Abstract arrays with ``tree``'s shapes, dtypes and shardings (what ``lower`` needs)."""
  import jax
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                     sharding=getattr(x, "sharding", None)),
                      tree)


class _Compile:
  """``jitted.lower(*args).compile()`` on a daemon thread (``args``: arrays or abstract arrays
  placed where the executable will run); ``result()`` waits for it. XLA:CPU compiles a program
  on one core, so this takes the other core while the main thread compiles the training
  step."""

  def __init__(self, jitted, *args):
    import threading
    self._out, self._error = None, None

    def work():
      try:
        self._out = jitted.lower(*args).compile()
      except BaseException as e:  # re-raised in the caller's thread by result()
        self._error = e

    self._thread = threading.Thread(target=work, name="rlhp-eval-compile", daemon=True)
    self._thread.start()

  def result(self):
    self._thread.join()
    if self._error is not None:
      raise self._error
    return self._out
