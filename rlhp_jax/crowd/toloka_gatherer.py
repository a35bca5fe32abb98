"""Crowd labels on Toloka: the gatherer the external driver hands each batch of pairs to.

Per batch (one iteration of the loop), as the seed post does by hand, made crash-safe:

    render the asked-for pairs (CPU MuJoCo, parallel)  ->  upload clips (local / S3)
    -> clone the base pool, set the mixer and name     ->  create one task per pair (video1/2)
    -> open the pool, poll completion % (progress), downloading every answer to the label store
    -> aggregate (crowd-kit) -> P(left) per pair; pairs with only "failed to load" answers are
       asked again in a fresh pool (``toloka.requeue_rounds`` times), then dropped and counted.

Never lose or re-buy a label: every raw answer goes to ``labels/labels.jsonl`` (fsynced) before
it is aggregated; the cloned pool's id is recorded before any task is created in it; on restart
the gatherer finds the pool of the interrupted iteration in the store, lists the tasks already
in it (a task's pair is read from its clip URL) and creates only the missing ones, and never
opens a pool again once it was opened. Transient errors (network, 429, 5xx) are retried with
backoff; a bad token or a missing pool raises ``CrowdError`` with what to do.

The Toloka token comes from ``TOLOKA_TOKEN`` only; it is held by the client object and written
nowhere. Clip URLs (which may be presigned) are not written to the run directory either.
"""

from __future__ import annotations

import os
import posixpath
import sys
import time
import urllib.parse

import numpy as np

from rlhp_jax import label_store, render, validation
from rlhp_jax.crowd import aggregate
from rlhp_jax.crowd.config import TOKEN_ENV
from rlhp_jax.crowd.retry import retry_call
from rlhp_jax.crowd.storage import make_storage
from rlhp_jax.envs import hopper

SOURCE = "toloka"
OUTPUT_FIELD = "result"
INPUT_LEFT, INPUT_RIGHT = "video1", "video2"
TOLOKA_ANSWERS = {"left": label_store.LEFT, "right": label_store.RIGHT,
                  "error": label_store.FAILED}
"""Output values of the seed's interface -> label-store answers ("error" = failed to load)."""


class CrowdError(RuntimeError):
  """A crowd-side problem retrying cannot fix; the message says what to do."""


def token_from_env() -> str:
  token = os.environ.get(TOKEN_ENV, "").strip()
  validation.require(bool(token), TOKEN_ENV,
                     "is not set; export TOLOKA_TOKEN=<your OAuth token> (Toloka: Profile -> "
                     "Integrations). It is read from the environment only, never from a config")
  return token


def make_client(url: str, token: str):
  import toloka.client as toloka
  # retries=0: our own retry_call decides what is transient and logs each retry.
  return toloka.TolokaClient(token, url=url, retries=0, timeout=30.0)


def pair_of_url(url: str) -> str | None:
  """The pair id in a clip URL (``.../<pair_id>-left.mp4?...``), or None."""
  name = posixpath.basename(urllib.parse.urlparse(url).path)
  for side in ("-left.mp4", "-right.mp4"):
    if name.endswith(side):
      return name[: -len(side)]
  return None


class TolokaGatherer:
  """Labels pairs with Toloka crowd workers; see the module docstring."""

  def __init__(self, cfg, run_dir: str, client=None, storage=None, log=print,
               sleep=time.sleep):
    cfg.toloka.check_ready()
    cfg.storage.check_ready()
    self.cfg, self.tcfg = cfg, cfg.toloka
    self.run_dir = run_dir
    self.client = client if client is not None else make_client(cfg.toloka.url, token_from_env())
    self.storage = storage or make_storage(cfg.storage, run_dir, os.path.basename(run_dir))
    self.store = label_store.LabelStore(run_dir)
    self.clip_dir = os.path.join(run_dir, "clips")
    self.log, self.sleep = log, sleep
    self.stats = {"skipped_no_answer": 0, "dropped_failed_to_load": 0, "unknown_answers": 0}

  # -- the Gatherer interface ---------------------------------------------------------------
  def label(self, query: dict, iteration: int):
    mask = np.asarray(query["mask"])
    clips = render.render_pairs(hopper.ASSET, query, iteration, self.clip_dir, self.cfg.clips,
                                self.cfg.env.dt)
    keys = {c["pair_id"]: (self.storage.put(c["left"]), self.storage.put(c["right"]))
            for c in clips}
    todo = [c["pair_id"] for c in clips if not self._usable(c["pair_id"], iteration)]
    for round_ in range(self.tcfg.requeue_rounds + 1):
      if not todo:
        break
      self._run_pool(iteration, round_, todo, keys)
      answers = self.store.answers(iteration=iteration, source=SOURCE)
      failed = aggregate.only_failed(answers)
      todo = [pid for pid in todo if pid in failed]
      if todo and round_ < self.tcfg.requeue_rounds:
        self.log(f"toloka: {len(todo)} pair(s) only 'failed to load'; asking again")
    answers = self.store.answers(iteration=iteration, source=SOURCE)
    probs = aggregate.preference_probabilities(answers, self.tcfg.aggregator,
                                               self.tcfg.soft_labels)
    label = np.zeros(mask.shape, np.float32)
    valid = np.zeros(mask.shape, bool)
    for c in clips:
      if c["pair_id"] in probs:
        label[c["pair"]], valid[c["pair"]] = probs[c["pair_id"]], True
    dropped = len(aggregate.only_failed(answers) & set(keys))
    unanswered = sum(1 for pid in keys if pid not in probs) - dropped
    self.stats["dropped_failed_to_load"] += dropped
    self.stats["skipped_no_answer"] += unanswered
    if dropped or unanswered:
      self.log(f"toloka: iteration {iteration}: {dropped} pair(s) dropped (only 'failed to "
               f"load'), {unanswered} without answers; training on {int(valid.sum())}")
    return label, valid

  def _usable(self, pid: str, iteration: int) -> bool:
    return any(a["answer"] in (label_store.LEFT, label_store.RIGHT)
               for a in self.store.answers(iteration=iteration, pair_id=pid))

  # -- one pool -------------------------------------------------------------------------------
  def _call(self, what, fn):
    from toloka.client import exceptions as tex
    try:
      return retry_call(fn, what=f"toloka {what}")
    except tex.AuthenticationApiError as e:
      raise CrowdError(f"toloka {what}: the token was rejected (bad or expired); export a "
                       f"fresh {TOKEN_ENV}") from e
    except tex.AccessDeniedApiError as e:
      raise CrowdError(f"toloka {what}: access denied; the token's account does not own this "
                       "project/pool") from e
    except tex.DoesNotExistApiError as e:
      raise CrowdError(f"toloka {what}: not found; check toloka.base_pool_id / project_id "
                       "(rlhp-jax toloka setup prints them)") from e

  def _run_pool(self, iteration: int, round_: int, pair_ids: list[str], keys: dict) -> None:
    where = {"iteration": iteration, "round": round_}
    cloned = self.store.last_event("pool_cloned", **where)
    if cloned is None:
      pool = self._call("clone_pool", lambda: self.client.clone_pool(self.tcfg.base_pool_id))
      # Recorded before any task exists: a restart re-attaches here instead of paying twice.
      self.store.add_event("pool_cloned", pool_id=pool.id, **where)
      pool_id = pool.id
    else:
      pool_id = cloned["pool_id"]
      self.log(f"toloka: re-attaching to pool {pool_id} (iteration {iteration})")
      pool = self._call("get_pool", lambda: self.client.get_pool(pool_id))
    opened = self.store.last_event("pool_opened", pool_id=pool_id) is not None
    if not opened:
      if self.store.last_event("pool_configured", pool_id=pool_id) is None:
        pool.set_mixer_config(real_tasks_count=self.tcfg.tasks_per_page,
                              golden_tasks_count=0, training_tasks_count=0)
        pool.private_name = f"{os.path.basename(self.run_dir)} iteration {iteration}" + (
            f" retry {round_}" if round_ else "")
        pool.defaults = type(pool).Defaults(
            default_overlap_for_new_tasks=self.tcfg.overlap,
            default_overlap_for_new_task_suites=self.tcfg.overlap)
        self._call("update_pool", lambda: self.client.update_pool(pool_id, pool))
        self.store.add_event("pool_configured", pool_id=pool_id, **where)
      self._create_missing_tasks(pool_id, pair_ids, keys, where)
      self._call("open_pool", lambda: self.client.open_pool(pool_id))
      self.store.add_event("pool_opened", pool_id=pool_id, pairs=len(pair_ids), **where)
    self._wait(pool_id, iteration)

  def _create_missing_tasks(self, pool_id, pair_ids, keys, where) -> None:
    import toloka.client as toloka
    existing = {pair_of_url(t.input_values.get(INPUT_LEFT, ""))
                for t in self._call("get_tasks", lambda: list(self.client.get_tasks(
                    pool_id=pool_id)))}
    missing = [pid for pid in pair_ids if pid not in existing]
    if not missing:
      return
    tasks = [toloka.Task(pool_id=pool_id, overlap=self.tcfg.overlap,
                         input_values={INPUT_LEFT: self.storage.url(keys[pid][0]),
                                       INPUT_RIGHT: self.storage.url(keys[pid][1])})
             for pid in missing]
    result = self._call("create_tasks", lambda: self.client.create_tasks(
        tasks, allow_defaults=True, open_pool=False, skip_invalid_items=False))
    self.store.add_event("tasks_created", pool_id=pool_id, pairs=missing,
                         task_ids=[t.id for t in result.items.values()], **where)
    if result.validation_errors:
      raise CrowdError(f"toloka create_tasks: {len(result.validation_errors)} task(s) rejected "
                       f"({result.validation_errors}); does the project's input spec have "
                       f"{INPUT_LEFT!r} and {INPUT_RIGHT!r} URL fields?")

  def _wait(self, pool_id: str, iteration: int) -> None:
    """Polls until the pool closes (or times out), storing answers as they arrive."""
    start = time.monotonic()
    while True:
      pool = self._call("get_pool", lambda: self.client.get_pool(pool_id))
      self._download(pool_id, iteration)
      if pool.is_closed():
        break
      if time.monotonic() - start > self.tcfg.timeout_s:
        self.log(f"toloka: pool {pool_id} still open after {self.tcfg.timeout_s:.0f}s; "
                 "closing it and going on with the answers so far")
        self._call("close_pool", lambda: self.client.close_pool(pool_id))
        break
      self._progress(pool_id, start)
      self.sleep(self.tcfg.poll_interval_s)
    self._download(pool_id, iteration)
    n = len(self.store.answers(iteration=iteration, source=SOURCE))
    self.log(f"toloka: pool {pool_id} closed; {n} answer(s) stored for iteration {iteration}")

  def _progress(self, pool_id: str, start: float) -> None:
    from toloka.client.analytics_request import CompletionPercentagePoolAnalytics
    op = self._call("analytics", lambda: self.client.get_analytics(
        [CompletionPercentagePoolAnalytics(subject_id=pool_id)]))
    op = self._call("analytics", lambda: self.client.wait_operation(op))
    try:
      percent = float(op.details["value"][0]["result"]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
      return
    filled = int(percent / 5)
    self.log(f"toloka: pool {pool_id} [{'#' * filled}{'.' * (20 - filled)}] {percent:5.1f}% "
             f"({time.monotonic() - start:.0f}s)")

  def _download(self, pool_id: str, iteration: int) -> int:
    """Stores every submitted/accepted answer of the pool (idempotent); returns new ones."""
    assignments = self._call("get_assignments", lambda: list(self.client.get_assignments(
        pool_id=pool_id, status=["SUBMITTED", "ACCEPTED"])))
    records = []
    for a in assignments:
      for i, (task, solution) in enumerate(zip(a.tasks, a.solutions or [])):
        pid = pair_of_url(task.input_values.get(INPUT_LEFT, ""))
        raw = (solution.output_values or {}).get(OUTPUT_FIELD)
        if pid is None or raw not in TOLOKA_ANSWERS:
          self.stats["unknown_answers"] += 1
          continue
        submitted = a.submitted or a.created
        records.append(dict(
            answer_id=f"{a.id}/{task.id or i}", pair_id=pid, iteration=iteration,
            pair=int(pid.rsplit("-p", 1)[1]), answer=TOLOKA_ANSWERS[raw], worker=a.user_id,
            source=SOURCE, time_s=submitted.timestamp() if submitted else None,
            pool_id=pool_id, task_id=task.id, assignment_id=a.id, raw=raw))
    return self.store.add_answers(records)

  def close(self) -> None:
    if any(self.stats.values()):
      print(f"toloka: totals {self.stats}", file=sys.stderr)
