"""One process at a time per run directory.

Two processes training or labelling in the same run (a second ``--resume`` after a lost SSH
session, a forgotten tmux window) would both clone pools and pay for them, and overwrite each
other's checkpoints. ``lock(run_dir)`` takes an exclusive ``flock`` on ``<run_dir>/.lock`` for
the life of the process (the kernel drops it when the process dies, even by SIGKILL, so a crash
never leaves a stale lock) and writes the holder's pid and command into it for the message the
next one gets.
"""

from __future__ import annotations

import fcntl
import os
import sys

LOCK_NAME = ".lock"

_held: dict[str, int] = {}  # run_dir -> fd, kept open for the life of the process


class RunLocked(RuntimeError):
  """Another process holds the run directory; the message names its pid."""


def lock(run_dir: str, what: str = "") -> None:
  """Takes the run directory's lock or raises ``RunLocked`` at once (never waits)."""
  run_dir = os.path.abspath(run_dir)
  if run_dir in _held:
    return
  path = os.path.join(run_dir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 200, 0).decode(errors="replace").split("\n")[0].strip()
    os.close(fd)
    pid = holder.split(" ", 1)[0] if holder else "?"
    raise RunLocked(f"{run_dir} is in use by process {pid}"
                    + (f" ({holder.split(' ', 1)[1]})" if " " in holder else "")
                    + "; wait for it to finish or stop it (kill " + pid + "), then resume")
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()} {what or ' '.join(sys.argv[:3])}\n".encode(), 0)
  _held[run_dir] = fd


def unlock(run_dir: str) -> None:
  fd = _held.pop(os.path.abspath(run_dir), None)
  if fd is not None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
