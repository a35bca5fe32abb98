"""The one reader of this project's JSONL files (``metrics.jsonl``, ``labels/labels.jsonl``).

Writers append whole lines, each ending in a newline, and fsync (``report.MetricsLog``,
``label_store.LabelStore``). A crash mid-append leaves a *torn tail*: bytes after the last
newline. Readers here never fail on one:

  * the torn tail is left out (it was never acknowledged, so nothing acted on it);
  * a complete line that is not a JSON object (or that ``accept`` rejects) is skipped and, when
    ``on_bad`` is given, reported with its 1-based line number; blank lines are skipped quietly.

Reading changes nothing on disk. Writers that reopen a file cut its torn tail themselves
(``complete_end`` says where), so their next line starts on a line of its own.
"""

from __future__ import annotations

import json
import os
from typing import Callable

BadLine = Callable[[int, bytes], None]
"""``on_bad(number, line)``: a complete line that was skipped (1-based number, raw bytes)."""


def complete_end(data: bytes) -> int:
  """Offset just past the last newline of ``data``: ``data[complete_end(data):]`` is the torn
  tail (empty when the file ends cleanly)."""
  return data.rfind(b"\n") + 1


def parse(data: bytes, on_bad: BadLine | None = None,
          accept: Callable[[dict], bool] | None = None) -> list[dict]:
  """The JSON objects of ``data``'s complete lines, in order (see the module docstring)."""
  rows = []
  for number, line in enumerate(data[:complete_end(data)].split(b"\n")[:-1], start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
      row = None
    if isinstance(row, dict) and (accept is None or accept(row)):
      rows.append(row)
    elif on_bad is not None:
      on_bad(number, line)
  return rows


def read(path: str, on_bad: BadLine | None = None,
         accept: Callable[[dict], bool] | None = None) -> list[dict]:
  """The JSON objects of the file at ``path`` (``[]`` if there is none); see ``parse``."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    return parse(f.read(), on_bad, accept)
