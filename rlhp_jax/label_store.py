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

Pair ids are ``it<iteration>-p<index>``; the external driver recomputes the same query for an
interrupted iteration, so the ids (and the answers stored under them) line up after a restart.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Iterable

LEFT, RIGHT, EQUAL, CANT_TELL, FAILED = "left", "right", "equal", "cant_tell", "failed"
ANSWERS = (LEFT, RIGHT, EQUAL, CANT_TELL, FAILED)
"""left / right: that clip is better; equal: equally good (label 0.5); cant_tell: the person
could not judge (no label); failed: the clips did not load (no label, the pair is re-asked)."""


def pair_id(iteration: int, index: int) -> str:
  return f"it{iteration:05d}-p{index:03d}"


def label_of(answer: str) -> float | None:
  """The preference for the left clip that one answer states (None: no label)."""
  return {LEFT: 1.0, RIGHT: 0.0, EQUAL: 0.5}.get(answer)


class LabelStore:
  """Append-only, fsynced JSONL of answers and events; safe to share between threads."""

  def __init__(self, run_dir: str, filename: str = "labels.jsonl"):
    self.dir = os.path.join(run_dir, "labels")
    os.makedirs(self.dir, exist_ok=True)
    self.path = os.path.join(self.dir, filename)
    self._lock = threading.Lock()
    self._records: list[dict] = []
    self._answer_ids: set[str] = set()
    if os.path.exists(self.path):
      self._load()

  def _load(self) -> None:
    with open(self.path, "rb") as f:
      data = f.read()
    lines = data.split(b"\n")
    # A crash mid-write can leave a torn last line (no newline): drop it, keep the rest.
    if lines and lines[-1] and not data.endswith(b"\n"):
      lines = lines[:-1]
      with open(self.path, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines if line))
        f.flush()
        os.fsync(f.fileno())
    for line in lines:
      if line.strip():
        record = json.loads(line)
        self._records.append(record)
        if record.get("type") == "answer":
          self._answer_ids.add(record["answer_id"])

  def _append(self, record: dict) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(self.path, "a") as f:
      f.write(line)
      f.flush()
      os.fsync(f.fileno())
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
    return record

  def events(self, event: str | None = None, **match) -> list[dict]:
    with self._lock:
      return [r for r in self._records if r["type"] == "event"
              and (event is None or r["event"] == event)
              and all(r.get(k) == val for k, val in match.items())]

  def last_event(self, event: str, **match) -> dict | None:
    found = self.events(event, **match)
    return found[-1] if found else None
