"""The on-disk record of every paid-for or hand-given answer: append-only JSONL, fsynced.

Crowd labels cost money and a person's judgements cost their time, so every raw answer is on
disk *before* the loop uses it, and everything needed to re-attach after a crash (the id of an
open pool, which tasks were created for which pair) is written before the action it protects.

One file, ``<run_dir>/labels/labels.jsonl``; each line is a record with a ``type``:

    answer   one raw judgement: pair_id, iteration, pair, answer, worker, time, source, plus
             source-specific fields (pool_id, task_id, assignment_id, ...). ``answer`` is one of
             ANSWERS. Unique by ``answer_id``: appending the same answer twice is a no-op.
    event    anything a restart must know: e.g. {"event": "pool_opened", "iteration": 3,
             "pool_id": "..."} written before tasks are created.

Pair ids and fingerprints are made by ``clips``; the external driver recomputes the same query
for an interrupted iteration, so the ids (and the answers stored under them) line up after a
restart. Each iteration's pairs are recorded with their fingerprints (``pairs_asked``); a
restart that recomputes other pairs under the same ids is stopped (``check_pairs``).

The file is only ever appended to: a torn tail is cut at the last newline on open, a failed
append is rolled back to the previous size, a damaged line in the middle is reported and
skipped. Nothing rewrites it, so no crash can lose what it held.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Iterable

from rlhp_jax import faults, jsonl

log = logging.getLogger(__name__)

LEFT, RIGHT, EQUAL, CANT_TELL, FAILED = "left", "right", "equal", "cant_tell", "failed"
ANSWERS = (LEFT, RIGHT, EQUAL, CANT_TELL, FAILED)
"""left / right: that clip is better; equal: equally good (label 0.5); cant_tell: the person
could not judge (no label); failed: the clips did not load (no label, the pair is re-asked)."""


def label_of(answer: str) -> float | None:
  """The preference for the left clip that one answer states (None: no label)."""
  return {LEFT: 1.0, RIGHT: 0.0, EQUAL: 0.5}.get(answer)


class PairMismatchError(RuntimeError):
  """A resumed iteration recomputed other pairs than the ones its stored answers are for."""


class LabelStoreError(OSError):
  """The store could not append a record (e.g. the disk is full); nothing of it stays on disk."""


def _write_line(fd: int, data: bytes) -> None:
  """Writes one encoded record (tests replace this to simulate a full disk)."""
  faults.write_maybe_torn(fd, data, "store:torn")


def _is_record(record: dict) -> bool:
  """A label-store line: an event, or an answer with its string id."""
  return record.get("type") in ("answer", "event") and (
      record["type"] == "event" or isinstance(record.get("answer_id"), str))


class LabelStore:
  """Append-only, fsynced JSONL of answers and events; safe to share between threads.

  The file is never rewritten. On open, a torn tail (a crash mid-append) is cut off at the last
  newline with ``truncate``; a line in the middle that does not parse is reported
  and skipped (a warning on this module's logger). An append that fails (a full disk) is
  rolled back to the previous size and raises ``LabelStoreError``, so the next append never
  lands on a partial line.
  """

  def __init__(self, run_dir: str, filename: str = "labels.jsonl"):
    self.dir = os.path.join(run_dir, "labels")
    os.makedirs(self.dir, exist_ok=True)
    self.path = os.path.join(self.dir, filename)
    self._lock = threading.Lock()
    self._records: list[dict] = []
    self._answer_ids: set[str] = set()
    self.skipped_lines: list[int] = []
    if os.path.exists(self.path):
      self._load()

  def _load(self) -> None:
    with open(self.path, "rb") as f:
      data = f.read()
    end = jsonl.complete_end(data)
    if end < len(data):
      # A crash mid-append left a torn tail; it was never acknowledged, so nothing acted on it.
      os.truncate(self.path, end)
      _fsync_path(self.path)
      log.warning(f"{self.path}: cut a torn last line ({len(data) - end} bytes) left by a crash")

    def skipped(number: int, line: bytes) -> None:
      self.skipped_lines.append(number)
      log.warning(f"{self.path}: line {number} is not a label record; skipped (the file is "
                 "left as it is)")

    self._records = jsonl.parse(data[:end], on_bad=skipped, accept=_is_record)
    self._answer_ids = {r["answer_id"] for r in self._records if r["type"] == "answer"}

  def _append(self, record: dict) -> None:
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      size = os.fstat(fd).st_size
      try:
        _write_line(fd, data)
        os.fsync(fd)
      except OSError as e:
        try:  # roll back whatever part of the line reached the file
          os.ftruncate(fd, size)
          os.fsync(fd)
        except OSError:
          pass
        raise LabelStoreError(e.errno, f"{self.path}: could not append a record "
                              f"({e.strerror or e}); nothing was kept of it. Free disk space, "
                              "then resume") from e
    finally:
      os.close(fd)
    self._records.append(record)

  # -- answers --------------------------------------------------------------------------
  def add_answer(self, *, answer_id: str, pair_id: str, iteration: int, pair: int, answer: str,
                 worker: str, source: str, time_s: float | None = None, **extra) -> bool:
    """Appends one raw answer (durably) unless ``answer_id`` is already stored. Returns
    whether it was new."""
    if answer not in ANSWERS:
      raise ValueError(f"answer must be one of {ANSWERS}, got {answer!r}")
    record = {"type": "answer", "answer_id": str(answer_id), "pair_id": pair_id,
              "iteration": int(iteration), "pair": int(pair), "answer": answer,
              "worker": str(worker), "source": source,
              "time": time.time() if time_s is None else float(time_s), **extra}
    with self._lock:
      if record["answer_id"] in self._answer_ids:
        return False
      self._append(record)
      self._answer_ids.add(record["answer_id"])
    faults.kill_point("store:answer")
    return True

  def add_answers(self, records: Iterable[dict]) -> int:
    """Several answers (keyword dicts of ``add_answer``); returns how many were new."""
    return sum(self.add_answer(**r) for r in records)

  def has_answer(self, answer_id: str) -> bool:
    with self._lock:
      return str(answer_id) in self._answer_ids

  def answers(self, iteration: int | None = None, source: str | None = None,
              pair_id: str | None = None) -> list[dict]:
    with self._lock:
      return [r for r in self._records if r["type"] == "answer"
              and (iteration is None or r["iteration"] == iteration)
              and (source is None or r["source"] == source)
              and (pair_id is None or r["pair_id"] == pair_id)]

  # -- events ---------------------------------------------------------------------------
  def add_event(self, event: str, **fields) -> dict:
    record = {"type": "event", "event": event, "time": time.time(), **fields}
    with self._lock:
      self._append(record)
    faults.kill_point(f"store:{event}")
    return record

  def events(self, event: str | None = None, **match) -> list[dict]:
    with self._lock:
      return [r for r in self._records if r["type"] == "event"
              and (event is None or r["event"] == event)
              and all(r.get(k) == val for k, val in match.items())]

  def last_event(self, event: str, **match) -> dict | None:
    found = self.events(event, **match)
    return found[-1] if found else None


def _fsync_path(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def check_pairs(store: "LabelStore", iteration: int, fingerprints: dict[str, str],
                run_dir: str) -> None:
  """Records an iteration's pairs (``pairs_asked``) the first time it is asked; afterwards a
  recomputed query must ask for the very same pairs, or the stored tasks and answers belong to
  other clips: ``PairMismatchError`` says so and how to go on, and nothing is attached."""
  asked = store.last_event("pairs_asked", iteration=iteration)
  if asked is None:
    store.add_event("pairs_asked", iteration=iteration, fingerprints=fingerprints)
    return
  stored = asked["fingerprints"]
  for pid in sorted(set(stored) | set(fingerprints)):
    if stored.get(pid) != fingerprints.get(pid):
      raise PairMismatchError(
          f"iteration {iteration}: pair {pid} is not the pair its stored answers were given "
          f"for (fingerprint {fingerprints.get(pid)} now, {stored.get(pid)} when asked): the "
          "query was recomputed differently (another machine or XLA build?). Resume where the "
          "run started, or drop that iteration's pairs: rlhp-jax labels drop-iteration "
          f"{run_dir} {iteration}")
