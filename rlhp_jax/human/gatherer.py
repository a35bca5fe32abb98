"""``labels="human"``: you judge the queried pairs on a local web page while the run waits.

Per iteration: render the masked pairs that have no answer yet into ``<run_dir>/clips/``,
publish them on the page (the server starts on the first batch and prints its link), wait until
all are judged or ``human.batch_timeout_s`` passes, then read the labels from the label store.
Every answer is on disk before the loop sees it, so a restarted run (``--resume``, which asks
for the same pairs again) re-asks nothing that was already judged; the pairs' fingerprints are
stored when first asked, and a resume that recomputes other pairs stops instead of attaching
the old judgements to them.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from rlhp_jax import clips, config_errors
from rlhp_jax.clips import pair_id
from rlhp_jax.human.server import SOURCE, LabelServer
from rlhp_jax.label_store import LabelStore, check_pairs, label_of

log = logging.getLogger(__name__)

HEARTBEAT_S = 60.0
"""Seconds between terminal reminders while nothing is judged."""


class HumanGatherer:
  """Labels pairs with a person's answers from the labelling page (see ``human/server.py``).
  Takes its own config sections (``human``, ``clips``), the page's ``instruction`` and the
  env's step ``env_dt`` (clip timing)."""

  def __init__(self, human_cfg, clips_cfg, run_dir: str, *, instruction: str, env_dt: float):
    self.hcfg, self.clips_cfg = human_cfg, clips_cfg
    self.instruction, self.env_dt = instruction, env_dt
    self.run_dir = run_dir
    self.clips_dir = os.path.join(run_dir, "clips")
    self.store = LabelStore(run_dir)
    self.server: LabelServer | None = None

  @property
  def url(self) -> str | None:
    """The page's link (with its token) once the server runs."""
    return self.server.url if self.server is not None else None

  def label(self, query, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """Asks for the masked pairs of ``query`` (one run's ``Query``, numpy leaves) not yet
    judged and waits; returns (label [P], valid [P])."""
    mask = np.asarray(query.mask, bool)
    if self.store.last_event("iteration_dropped", iteration=iteration) is not None:
      log.warning(f"iteration {iteration}: its pairs were dropped; training on none of them")
      return np.zeros(mask.shape, np.float32), np.zeros(mask.shape, bool)
    check_pairs(self.store, iteration, clips.fingerprints(query, iteration), self.run_dir)
    ids = [pair_id(iteration, int(i)) for i in np.flatnonzero(mask)]
    todo = [i for i in np.flatnonzero(mask) if not self._judged(pair_id(iteration, int(i)))]
    if todo:
      server = self._start_server()
      records = self._render(query, iteration, todo)
      server.publish(iteration, records)
      self.store.add_event("human_batch_opened", iteration=iteration,
                           pairs=[r["pair_id"] for r in records])
      self._wait(server, iteration, ids)
    return self._labels(mask, iteration)

  def close(self) -> None:
    """Stops the page's server (the run ended or was interrupted)."""
    if self.server is not None:
      self.server.stop()
      self.server = None

  # -- steps ----------------------------------------------------------------------------
  def _judged(self, pid: str) -> bool:
    return bool(self.store.answers(pair_id=pid, source=SOURCE))

  def _start_server(self) -> LabelServer:
    if self.server is None:
      h = self.hcfg
      try:
        self.server = LabelServer(self.store, self.run_dir, self.instruction,
                                  host=h.host, port=h.port, clips_dir=self.clips_dir,
                                  allowed_hosts=h.allowed_hosts).start()
      except OSError as e:
        raise config_errors.ConfigError(
            f"human.port: cannot listen on {h.host}:{h.port} ({e.strerror or e}); pass "
            "another with --human.port, or 0 for any free port") from e
      log.info(f"judge clips at {self.server.url}")
    return self.server

  def _render(self, query, iteration: int, indices) -> list[dict]:
    """Draws only the given pairs (the masked ones still unjudged)."""
    return clips.render_asked(query, iteration, self.clips_dir, self.clips_cfg, self.env_dt,
                              indices=indices)

  def _wait(self, server: LabelServer, iteration: int, ids: list[str]) -> None:
    """Until every pair of ``ids`` is judged or the batch times out (then its unjudged pairs
    are withdrawn from the page, so no answer arrives after the labels are read)."""
    timeout = self.hcfg.batch_timeout_s
    deadline = time.monotonic() + timeout if timeout > 0 else None
    shown, last_report, timed_out = -1, time.monotonic(), False
    while True:
      done = len(server.answered(ids))
      now = time.monotonic()
      if done != shown or now - last_report > HEARTBEAT_S:
        self._progress(iteration, done, len(ids), server.url if done == shown else None)
        shown, last_report = done, now
      if done == len(ids):
        break
      if deadline is not None and now >= deadline:
        server.withdraw(ids)
        done, timed_out = len(server.answered(ids)), True
        break
      server.wait_for_change(1.0 if deadline is None else min(1.0, deadline - now))
    if timed_out:
      log.warning(f"iteration {iteration}: batch timed out after {timeout:g}s with "
                f"{len(ids) - done} of {len(ids)} pairs unjudged; going on without them")
    self.store.add_event("human_batch_closed", iteration=iteration, judged=done,
                         asked=len(ids), timed_out=timed_out)

  def _progress(self, iteration: int, done: int, total: int, reminder: str | None) -> None:
    """One progress line; ``redraw`` lets a terminal handler redraw it in place."""
    line = f"iteration {iteration}: {done}/{total} pairs judged"
    if reminder:
      line += f", waiting for you at {reminder}"
    log.info(line, extra={"redraw": True})

  def _labels(self, mask: np.ndarray, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """left -> 1, right -> 0, equal -> 0.5; can't tell, failed or no answer -> not valid."""
    label = np.zeros(mask.shape, np.float32)
    valid = np.zeros(mask.shape, bool)
    for i in np.flatnonzero(mask):
      answers = self.store.answers(pair_id=pair_id(iteration, int(i)), source=SOURCE)
      value = label_of(answers[-1]["answer"]) if answers else None
      if value is not None:
        label[i], valid[i] = value, True
    return label, valid
