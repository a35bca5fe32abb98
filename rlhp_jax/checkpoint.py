"""Checkpoints of the whole run state (agent, reward ensemble, optimiser states, preference
buffer, RNG keys, counters) with orbax; ``--resume`` continues a killed run where it stopped.

A checkpoint that cannot be read (a disk that lost data, a half-copied run directory) is moved
aside to ``<directory>.unreadable/<step>`` with a warning line, and the previous kept step is
restored instead."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

from rlhp_jax import config_errors, faults

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """No kept checkpoint could be restored; the message says what to do."""


class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a state pytree, indexed by chunk number."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._keep = keep
    self._manager = self._open()

  def _open(self):
    with _quiet_absl():  # a damaged step's metadata is reported by restore, in one line
      return ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(
              max_to_keep=self._keep, create=True, enable_async_checkpointing=False))

  def save(self, step: int, state) -> None:
    finalize = getattr(self._manager, "_finalize_checkpoint", None)
    if finalize is not None and faults.due("checkpoint:during"):
      def die_before_commit(*args, **kwargs):  # files written, the step not yet committed
        faults.die()
      self._manager._finalize_checkpoint = die_before_commit
    self._manager.save(step, args=ocp.args.StandardSave(_payload(state)))
    self._manager.wait_until_finished()
    if faults.due("checkpoint:torn"):
      _tear(os.path.join(self.directory, str(step)))
      faults.die()
    faults.kill_point("checkpoint:after")

  def latest(self) -> int | None:
    with _quiet_absl():
      return self._manager.latest_step()

  def restore(self, like, step: int | None = None):
    """Restores into the structure (and shapes, dtypes) of ``like``; returns (step, state).
    Without ``step``, the newest readable checkpoint: an unreadable newest one is set aside
    with a warning and the one before it is used."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _payload(like))
    with _quiet_absl():
      steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
    for i, s in enumerate(steps):
      try:
        with _quiet_absl():  # orbax logs its own parse errors; ours is the one line below
          payload = self._manager.restore(s, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # noqa: BLE001 - orbax raises many kinds for damaged files
        if step is not None:
          raise CheckpointError(f"{self.directory}/{s}: unreadable checkpoint "
                                f"({type(e).__name__}: {_first_line(e)})") from e
        aside = self._set_aside(s)
        older = steps[i + 1] if i + 1 < len(steps) else None
        log.warning(f"warning: checkpoint {s} is unreadable ({type(e).__name__}: "
                   f"{_first_line(e)}); moved to {aside}; "
                   + (f"falling back to checkpoint {older}" if older is not None
                      else "no older checkpoint, starting from the beginning"))
        continue
      leaves, treedef = jax.tree.flatten(like)
      leaves = [payload.get(_leaf_name(j), leaf) for j, leaf in enumerate(leaves)]
      return s, jax.tree.unflatten(treedef, leaves)
    return 0, like

  def _set_aside(self, step: int) -> str:
    aside_dir = self.directory + ".unreadable"
    os.makedirs(aside_dir, exist_ok=True)
    dest = os.path.join(aside_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(os.path.join(self.directory, str(step)), dest)
    self._manager.close()
    self._manager = self._open()  # forget the step it had listed
    return dest

  def close(self) -> None:
    self._manager.close()


class RestoredRun(NamedTuple):
  config: Any        # the run's ExperimentConfig (its config.json)
  step: int          # the checkpoint's step: a chunk (synthetic driver) or an iteration
  state: Any         # the run state: leaves [runs, ...] (synthetic driver) or unbatched

  def one(self, run: int):
    """The state of the stack's ``run``-th run (an arm's seed); one the directory does not
    hold is a ``ConfigError`` naming ``--run`` (the offline probes' flag)."""
    runs = int(self.state.iteration.shape[0])
    config_errors.require(0 <= run < runs, "--run",
                          f"the run directory holds runs 0-{runs - 1}, got {run}")
    return jax.tree.map(lambda x: x[run], self.state)


def restore_run(run_dir: str, step: int | None = None) -> RestoredRun:
  """A run directory's config and its newest readable checkpoint (or ``step``) as a state.

  The template is the core's initial state of the run's stack of runs, shapes only
  (``jax.eval_shape``, nothing is computed): seeds x teacher settings on a leading axis for the
  synthetic driver, a stack of one run for the external driver. Host effects: reads
  ``config.json`` and ``checkpoints/``; an unreadable newest checkpoint is moved aside as
  ``Checkpointer.restore`` does. Raises ``ConfigError`` for a missing or bad config.json,
  ``CheckpointError`` when the run has no checkpoint."""
  import jax.numpy as jnp
  from rlhp_jax import core, experiment
  cfg = experiment.load_experiment(os.path.join(run_dir, "config.json"))
  directory = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(directory):
    raise CheckpointError(f"{run_dir}: no checkpoints/ folder; the run saved no checkpoint")
  system = core.RLHP(cfg)
  like = jax.eval_shape(system.init_runs, core.run_keys(cfg, max(1, len(cfg.teachers))))
  like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like)
  checkpointer = Checkpointer(directory)
  try:
    if step is None and checkpointer.latest() is None:
      raise CheckpointError(f"{directory}: holds no checkpoint")
    restored_step, state = checkpointer.restore(like, step)
  finally:
    checkpointer.close()
  if restored_step == 0:  # steps count from 1: every kept checkpoint was unreadable
    raise CheckpointError(f"{directory}: no readable checkpoint (the unreadable ones were "
                          f"moved to {directory}.unreadable)")
  return RestoredRun(cfg, restored_step, state)


@contextlib.contextmanager
def _quiet_absl():
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


def _tear(path: str) -> None:
  """Cuts every file of a checkpoint to half its size: what a crash leaves on a disk that
  reorders or drops unsynced writes (used by the kill matrix's ``checkpoint:torn`` point)."""
  for root, _, names in os.walk(path):
    for name in names:
      file = os.path.join(root, name)
      os.truncate(file, os.path.getsize(file) // 2)


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0][:200] if text else ""


def _leaf_name(i: int) -> str:
  return f"leaf_{i:05d}"


def _payload(state) -> dict:
  """The state's non-empty leaves by position (orbax cannot store zero-size arrays, which MJX's
  data has; those are rebuilt from the template on restore)."""
  return {_leaf_name(i): leaf for i, leaf in enumerate(jax.tree.leaves(state))
          if getattr(leaf, "size", 1) > 0}
