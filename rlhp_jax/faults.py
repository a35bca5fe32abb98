"""Deterministic crash points for the kill matrix (``tests/test_kill_matrix.py``).

A process started with ``RLHP_JAX_KILL_AT=<point>:<n>`` SIGKILLs itself the n-th time it
reaches ``kill_point(<point>)`` (n counts from 1 within the process). Unset, every hook is a
dictionary lookup and nothing else. Points are named by where they sit:

    store:<event>          after a label-store event (or ``store:answer``) is durably written
    store:torn             half of a label-store line written
    toloka:<call>:before   inside a Toloka write, before the request is sent
    toloka:<call>:after    inside a Toloka write, after Toloka accepted it (nothing recorded yet)
    download:half          half of one download's new answers stored
    metrics:before         learn has run, nothing of the iteration written yet
    metrics:torn           half of a metrics.jsonl line written
    checkpoint:during      checkpoint files written, not yet finalized
    checkpoint:torn        checkpoint written, then every file of it cut to half (a torn write)
    checkpoint:after       the checkpoint committed

A SIGKILL is what a power cut, an OOM kill or ``kill -9`` does: no ``finally``, no flush.
"""

from __future__ import annotations

import os
import signal

ENV = "RLHP_JAX_KILL_AT"

_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
  spec = os.environ.get(ENV, "")
  if not spec:
    return None
  name, _, n = spec.rpartition(":")
  if not name or not n.isdigit():
    return (spec, 1)
  return name, int(n)


def due(point: str) -> bool:
  """Counts one arrival at ``point``; True on the arrival the environment asks to die at."""
  target = _target()
  if target is None or target[0] != point:
    return False
  _counts[point] = _counts.get(point, 0) + 1
  return _counts[point] == target[1]


def die() -> None:
  os.kill(os.getpid(), signal.SIGKILL)


def kill_point(point: str) -> None:
  """Dies here if the environment asks for this arrival at ``point``."""
  if due(point):
    die()


def write_maybe_torn(fd: int, data: bytes, point: str) -> None:
  """``os.write`` all of ``data`` to ``fd``, or, at the chosen arrival at ``point``, half of it
  (fsynced) and then die: the torn line a crash mid-write leaves."""
  if due(point):
    os.write(fd, data[: len(data) // 2])
    os.fsync(fd)
    die()
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]
