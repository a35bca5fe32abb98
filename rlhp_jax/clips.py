"""What names a queried pair and its clips, and the clips of the pairs asked for. Host side.

    pair id     ``it<iteration, 5+ digits>-p<index in the query, 3+ digits>``, e.g. ``it00012-p003``
    clip file   ``<pair id>-left.mp4`` / ``<pair id>-right.mp4``
    fingerprint a short hash of a pair's states, stored when the pair is first asked, so a
                resume that recomputes other pairs under the same ids is caught

Both gatherers (Toloka, the labelling page) and the label store name pairs through here; the
page's clip route and the crowd's clip URLs are parsed here too. A query is one run's ``Query``
as the drivers hand it over: numpy leaves, pairs [P, 2, L, ...], mask [P].
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import urllib.parse

import numpy as np

SIDES = ("left", "right")
_PAIR_ID = re.compile(r"it(\d{5,})-p(\d{3,})")
_CLIP_NAME = re.compile(r"(it\d{5,}-p\d{3,})-(left|right)\.mp4")


def pair_id(iteration: int, index: int) -> str:
  return f"it{iteration:05d}-p{index:03d}"


def parse_pair_id(pid: str) -> tuple[int, int]:
  """(iteration, index) of a pair id; ValueError if ``pid`` is not one."""
  match = _PAIR_ID.fullmatch(pid) if isinstance(pid, str) else None
  if match is None:
    raise ValueError(f"not a pair id: {pid!r}")
  return int(match.group(1)), int(match.group(2))


def pair_index(pid: str) -> int:
  """The pair's index in its iteration's query."""
  return parse_pair_id(pid)[1]


def clip_name(pid: str, side: str) -> str:
  return f"{pid}-{side}.mp4"


def parse_clip_name(name: str) -> tuple[str, str] | None:
  """(pair id, side) of a clip file name, or None if ``name`` is not one."""
  match = _CLIP_NAME.fullmatch(name)
  return (match.group(1), match.group(2)) if match else None


def pair_of_url(url: str) -> str | None:
  """The pair id in a clip URL (``.../<pair id>-left.mp4?...``), or None."""
  parsed = parse_clip_name(posixpath.basename(urllib.parse.urlparse(url).path))
  return parsed[0] if parsed else None


def asked(query) -> list[int]:
  """Indices of the pairs a query asks for."""
  return [int(i) for i in np.flatnonzero(np.asarray(query.mask))]


def fingerprint(qpos, qvel) -> str:
  """A short hash of one pair's states (qpos, qvel of both clips), rounded to 1e-4 so that a
  recomputation on the same setup matches while a different pair does not."""
  h = hashlib.sha256()
  for x in (qpos, qvel):
    x = np.round(np.asarray(x, np.float64), 4) + 0.0  # + 0.0: -0.0 hashes as 0.0
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()[:16]


def fingerprints(query, iteration: int) -> dict[str, str]:
  """{pair id: fingerprint} of the pairs a query asks for."""
  return {pair_id(iteration, i): fingerprint(query.pairs.qpos[i], query.pairs.qvel[i])
          for i in asked(query)}


def render_asked(query, iteration: int, out_dir: str, clips_cfg, dt: float,
                 indices=None) -> list[dict]:
  """Draws the clips of the asked-for pairs (or of ``indices`` only) from their qpos
  ([P, 2, L, nq]), every ``clips_cfg.stride(dt)``-th step so they play in real time.

  Writes ``<out_dir>/<pair id>-{left,right}.mp4`` and returns one record per pair:
  ``{"pair": index, "pair_id", "left", "right"}`` (file paths). Clips already on disk (a
  restarted iteration) are not drawn again; a clip is encoded under a temporary name and
  renamed, so a crash never leaves a half-written one."""
  from rlhp_jax import render
  from rlhp_jax.envs import hopper
  os.makedirs(out_dir, exist_ok=True)
  stride = clips_cfg.stride(dt)
  qpos = np.asarray(query.pairs.qpos)
  records, todo_q, todo_paths = [], [], []
  for i in (asked(query) if indices is None else [int(i) for i in indices]):
    pid = pair_id(iteration, i)
    rec = {"pair": i, "pair_id": pid}
    for s, side in enumerate(SIDES):
      path = os.path.join(out_dir, clip_name(pid, side))
      rec[side] = path
      if not os.path.exists(path):
        todo_q.append(qpos[i, s, ::stride])
        todo_paths.append(path)
    records.append(rec)
  tmp = [p + ".part.mp4" for p in todo_paths]
  render.render_videos(hopper.ASSET, todo_q, tmp, 1.0 / (dt * stride), clips_cfg.width,
                       clips_cfg.height, clips_cfg.camera, clips_cfg.workers or None,
                       clips_cfg.shadows)
  for t, p in zip(tmp, todo_paths):
    os.replace(t, p)
  return records
