"""Checkpoints of the whole run state (agent, reward ensemble, optimiser states, preference
buffer, RNG keys, counters) with orbax; ``--resume`` continues a killed run where it stopped."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a state pytree, indexed by chunk number."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                             enable_async_checkpointing=False))

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(_payload(state)))
    self._manager.wait_until_finished()

  def latest(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, like, step: int | None = None):
    """Restores into the structure (and shapes, dtypes) of ``like``; returns (step, state)."""
    step = self.latest() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _payload(like))
    payload = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    leaves, treedef = jax.tree.flatten(like)
    leaves = [payload.get(_leaf_name(i), leaf) for i, leaf in enumerate(leaves)]
    return step, jax.tree.unflatten(treedef, leaves)

  def close(self) -> None:
    self._manager.close()


def _leaf_name(i: int) -> str:
  return f"leaf_{i:05d}"


def _payload(state) -> dict:
  """The state's non-empty leaves by position (orbax cannot store zero-size arrays, which MJX's
  data has; those are rebuilt from the template on restore)."""
  return {_leaf_name(i): leaf for i, leaf in enumerate(jax.tree.leaves(state))
          if getattr(leaf, "size", 1) > 0}
