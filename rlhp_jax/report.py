"""What a run leaves behind: metrics (JSONL), learning-curve PNG, policy video. Host side."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Iterable

import numpy as np

from rlhp_jax import faults, jsonl

log = logging.getLogger(__name__)


def to_python(x):
  """Host copy of a metric: numpy/jax scalars and arrays become floats and lists."""
  if isinstance(x, dict):
    return {k: to_python(val) for k, val in x.items()}
  arr = np.asarray(x)
  if arr.ndim == 0:
    return arr.item()
  return arr.tolist()


class MetricsLog:
  """Appends one JSON object per line to ``metrics.jsonl``, fsynced at once.

  A crash mid-write leaves a torn last line: reading skips it (``read_rows``) and opening the
  log for writing cuts it off, so the next row starts on a line of its own."""

  def __init__(self, run_dir: str, filename: str = "metrics.jsonl"):
    self.path = os.path.join(run_dir, filename)
    self.rows: list[dict] = []
    if os.path.exists(self.path):  # a resumed run keeps its history
      self.rows = read_rows(self.path)
      with open(self.path, "rb") as f:
        data = f.read()
      end = jsonl.complete_end(data)
      if end < len(data):
        os.truncate(self.path, end)

  def truncate(self, keep) -> None:
    """Keeps only the rows for which ``keep(row)`` holds (a resumed run drops rows written
    after its last checkpoint), rewriting the file."""
    self.rows = [r for r in self.rows if keep(r)]
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for r in self.rows:
        f.write(json.dumps(r) + "\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def write(self, row: dict) -> None:
    faults.kill_point("metrics:before")
    row = to_python(row)
    self.rows.append(row)
    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      faults.write_maybe_torn(fd, (json.dumps(row) + "\n").encode(), "metrics:torn")
      os.fsync(fd)
    finally:
      os.close(fd)


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics JSONL file; a torn or unreadable line (a crash mid-write) is
  skipped, never an error (``jsonl.read``)."""
  return jsonl.read(path)


def plot_learning_curve(rows: Iterable[dict], path: str, title: str,
                        series: dict[str, str], x: str = "env_steps",
                        second_x: str | None = None, fraction_key: str | None = None) -> None:
  """Line plot of ``series`` (metric key -> label) against ``x``. Per-seed lists are drawn as
  their mean with a band from the lowest to the highest seed. ``fraction_key`` (a share in
  [0, 1], e.g. the healthy-step fraction) goes on a right-hand axis, dashed. ``second_x`` adds
  that column's last value to the title."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = list(rows)
  fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=110)

  def points(key):
    pts = [(r[x], r[key]) for r in rows
           if key in r and any(v is not None for v in np.atleast_1d(np.asarray(r[key], object)))]
    if not pts:
      return None, None
    xs = np.array([p[0] for p in pts], float)
    ys = np.array([[np.nan if v is None else v for v in np.atleast_1d(np.asarray(p[1], object))]
                   for p in pts], float)
    return xs, ys

  def draw(axis, xs, ys, label, **kw):
    with np.errstate(all="ignore"):
      mean = np.nanmean(ys, 1)
    line, = axis.plot(xs, mean, lw=2, marker="o" if len(xs) < 30 else None, ms=3,
                      label=label + (f" (mean of {ys.shape[1]}, band min-max)"
                                     if ys.shape[1] > 1 else ""), **kw)
    if ys.shape[1] > 1:
      axis.fill_between(xs, np.nanmin(ys, 1), np.nanmax(ys, 1), color=line.get_color(),
                        alpha=0.18, lw=0)
    return line

  handles = []
  for key, label in series.items():
    xs, ys = points(key)
    if xs is not None:
      handles.append(draw(ax, xs, ys, label))
  ax.set_xlabel(x.replace("_", " "))
  ax.set_ylabel("return")
  ax.grid(alpha=0.3)
  if fraction_key:
    xs, ys = points(fraction_key)
    if xs is not None:
      ax2 = ax.twinx()
      handles.append(draw(ax2, xs, ys, fraction_key.split("/")[-1].replace("_", " "),
                          ls="--", color="0.35"))
      ax2.set_ylim(0, 1.05)
      ax2.set_ylabel(fraction_key.split("/")[-1].replace("_", " "))
  if handles:
    ax.legend(handles=handles, loc="upper left", fontsize=8)
  if second_x and rows and second_x in rows[-1]:
    last = np.atleast_1d(np.asarray(rows[-1][second_x], float))
    ax.set_title(f"{title}  ({second_x.split('/')[-1]}: {last.mean():.0f})")
  else:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


class Progress:
  """One line per report on this module's logger: percent, env steps, steps/s (rows of an
  evaluation have none: blank) and the chosen metrics. Usable as a driver's ``progress_fn``."""

  def __init__(self, total_steps: int, keys: dict[str, str]):
    self.total = total_steps
    self.keys = keys
    self.start = time.perf_counter()

  def __call__(self, steps: int, metrics: dict) -> None:
    elapsed = time.perf_counter() - self.start
    rate = metrics.get("steps_per_s")
    parts = [f"[{100 * steps / self.total:5.1f}%]", f"steps {steps:>10,d}",
             f"{rate:>8,.0f} steps/s" if rate is not None else " " * 16, f"{elapsed:6.0f}s"]
    for key, label in self.keys.items():
      vals = [x for x in np.ravel(np.asarray(metrics.get(key, []), dtype=object))
              if x is not None]
      if vals:
        val = float(np.mean(np.asarray(vals, float)))
        parts.append(f"{label} {val:8.2f}" if abs(val) < 10 else f"{label} {val:8.1f}")
    log.info("  ".join(parts))


def teacher_table(summary: dict) -> str:
  """Plain-text table: teacher, mean and per-seed final true return, labels."""
  names, s = summary["teachers"], summary["num_seeds"]
  returns = np.asarray(summary["eval_return_per_run"]).reshape(len(names), s)
  labels = np.asarray(summary["labels_per_run"]).reshape(len(names), s)
  lines = [f"{'teacher':<10} {'return':>9} {'std':>8}  {'labels':>7}  per seed",
           "-" * 64]
  for i, name in enumerate(names):
    per_seed = " ".join(f"{x:8.1f}" for x in returns[i])
    lines.append(f"{name:<10} {returns[i].mean():9.1f} {returns[i].std():8.1f}  "
                 f"{labels[i].mean():7.0f}  {per_seed}")
  return "\n".join(lines)


def plot_teachers(summary: dict, path: str) -> None:
  """Bar chart of final true return per teacher, seeds as dots."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names, s = summary["teachers"], summary["num_seeds"]
  returns = np.asarray(summary["eval_return_per_run"]).reshape(len(names), s)
  fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
  ax.bar(names, returns.mean(1), color="#8fb3d9", edgecolor="#2b5d8a")
  for i in range(len(names)):
    ax.scatter([i] * s, returns[i], color="#2b5d8a", zorder=3, s=14)
  ax.set_ylabel("final true return (deterministic, 10 episodes)")
  ax.set_title(f"{summary['name']}: true return per teacher ({s} seeds each)")
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
