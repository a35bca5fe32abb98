"""Crowd labels on Toloka: the gatherer the external driver hands each batch of pairs to.

Per batch (one iteration of the loop), as the seed post does by hand, made crash-safe:

    render the asked-for pairs (CPU MuJoCo, parallel)  ->  upload clips (local / S3)
    -> clone the base pool, set the mixer and name     ->  create one task per pair (video1/2)
    -> open the pool, poll completion % (progress), downloading every answer to the label store
    -> aggregate (crowd-kit) -> P(left) per pair; pairs with only "failed to load" answers are
       asked again in a fresh pool (``toloka.requeue_rounds`` times), then dropped and counted.

Never pay twice, never lose a label. Every step is recorded in the label store
(``labels/labels.jsonl``, fsynced) *before* the action it protects, so a restart (``--resume``)
knows what Toloka may already have done:

    pairs_asked       the iteration's pairs and their fingerprints (a hash of their states); a
                      resume that recomputes different pairs stops instead of attaching old
                      answers to new clips
    clone_requested   before cloning: a resume that finds no ``pool_cloned`` archives the
                      unrecorded clone (never opened, no tasks) instead of leaving it
    pool_cloned       the pool's id, before anything is put in it
    tasks_requested   the operation id of the task creation, derived from (pool, iteration,
                      round), before the request: a retry or a resume re-sends the *same*
                      operation id, and Toloka answers the existing operation instead of
                      creating the tasks again
    tasks_created     the task ids, once the operation finished
    pool_opened       the pool is never opened twice; waiting resumes on it
    pool_timed_out    closed by us after ``toloka.timeout_s``; answers of pages already taken
                      are still downloaded until no assignment is active
    pool_closed       done, with Toloka's close reason (a pool closed for lack of balance or a
                      blocked account stops the run with that reason)

Every raw answer is appended before it is aggregated. Transient errors (network, 429, 5xx) are
retried with backoff for ``toloka.retry_budget_s``; polls of an open pool ride out outages of
``toloka.outage_timeout_s``; anything retrying cannot fix raises ``CrowdError`` with one line
saying what to do. The progress bar's analytics never stop a run.

The Toloka token comes from ``TOLOKA_TOKEN`` only; it is held by the client object and written
nowhere. Clip URLs (which may be presigned) are not written to the run directory either.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
import uuid

import numpy as np

from rlhp_jax import clips, config_errors, faults, label_store
from rlhp_jax.clips import pair_of_url
from rlhp_jax.crowd import aggregate
from rlhp_jax.crowd.config import TOKEN_ENV
from rlhp_jax.crowd.retry import CrowdError, RetriesExhausted, describe, is_transient, retry_call
from rlhp_jax.crowd.storage import make_storage

log = logging.getLogger(__name__)

SOURCE = "toloka"
OUTPUT_FIELD = "result"
INPUT_LEFT, INPUT_RIGHT = "video1", "video2"
TOLOKA_ANSWERS = {"left": label_store.LEFT, "right": label_store.RIGHT,
                  "error": label_store.FAILED}
"""Output values of the seed's interface -> label-store answers ("error" = failed to load)."""
OPERATION_NAMESPACE = uuid.UUID("6b1f9a52-3f0c-4d4e-9a57-2f1d0c7e8b10")
"""uuid5 namespace of this project's task-creation operation ids."""
CLOSE_REASONS = {
    "MANUAL": "closed by hand (web interface or another program)",
    "EXPIRED": "its expiry date passed; move the base pool's will_expire later",
    "NOT_ENOUGH_BALANCE": "the account's balance ran out; top it up, then resume",
    "ASSIGNMENTS_LIMIT_EXCEEDED": "the pool reached Toloka's assignment limit",
    "BLOCKED": "the requester account is blocked; contact Toloka support, then resume",
    "FOR_UPDATE": "closed for an update by hand",
}
STOPPING_REASONS = ("NOT_ENOUGH_BALANCE", "BLOCKED")
"""Close reasons after which every later pool would close the same way: the run stops."""
ORPHAN_WINDOW_S = 300.0
"""A clone created up to this long before its ``clone_requested`` record (clock skew) counts."""


def token_from_env() -> str:
  token = os.environ.get(TOKEN_ENV, "").strip()
  config_errors.require(bool(token), TOKEN_ENV,
                     "is not set; export TOLOKA_TOKEN=<your OAuth token> (Toloka: Profile -> "
                     "Integrations). It is read from the environment only, never from a config")
  config_errors.require(token.isascii() and token.isprintable() and " " not in token, TOKEN_ENV,
                     "holds non-ASCII, space or control characters (a copy-paste artefact?); "
                     "export the token exactly as Toloka shows it")
  return token


def make_client(url: str, token: str):
  import toloka.client as toloka
  # retries=0: our own retry_call decides what is transient and logs each retry.
  return toloka.TolokaClient(token, url=url, retries=0, timeout=30.0)


def operation_id(pool_id: str, iteration: int, round_: int) -> str:
  """The task-creation operation id of one pool: the same on every retry and resume."""
  return str(uuid.uuid5(OPERATION_NAMESPACE, f"tasks/{pool_id}/{iteration}/{round_}"))


def preflight(client, tcfg) -> None:
  """The token is accepted and the base pool exists: checked before a run directory is made
  (``CrowdError`` lines name the field to fix)."""
  from toloka.client import exceptions as tex

  def call(what, fn):
    try:
      return retry_call(fn, what=f"toloka {what}", budget_s=min(60.0, tcfg.retry_budget_s))
    except tex.DoesNotExistApiError:
      raise CrowdError(f"toloka.base_pool_id: Toloka has no pool {tcfg.base_pool_id!r} (at "
                       f"{tcfg.url}); put the id 'rlhp-jax toloka setup' printed") from None
    except Exception as e:  # noqa: BLE001
      translated = translate(what, e)
      if translated is e:
        raise
      raise translated from None

  call("get_requester", client.get_requester)
  pool = call("get_pool", lambda: client.get_pool(tcfg.base_pool_id))
  if str(getattr(pool.status, "value", pool.status)) == "ARCHIVED":
    raise CrowdError(f"toloka.base_pool_id: pool {tcfg.base_pool_id} is archived; run "
                     "'rlhp-jax toloka setup' again and put the new id")


def translate(what: str, error: BaseException) -> BaseException:
  """A Toloka client error retrying cannot fix -> one ``CrowdError`` line (others unchanged)."""
  from toloka.client import exceptions as tex
  if isinstance(error, tex.AuthenticationApiError):
    return CrowdError(f"toloka {what}: the token was rejected (bad or expired); export a "
                      f"fresh {TOKEN_ENV}")
  if isinstance(error, tex.AccessDeniedApiError):
    return CrowdError(f"toloka {what}: access denied; the token's account does not own this "
                      "project/pool")
  if isinstance(error, tex.DoesNotExistApiError):
    return CrowdError(f"toloka {what}: not found; check toloka.base_pool_id / project_id "
                      "(rlhp-jax toloka setup prints them)")
  if isinstance(error, tex.ApiError) and not is_transient(error):
    message = " ".join(str(error.message or error.code).split())
    payload = " ".join(str(error.payload).split())[:300] if error.payload else ""
    hint = ("the pool or project was changed by hand (web interface?); re-run 'rlhp-jax toloka "
            "setup' or fix it there, then resume" if error.status_code == 409 else
            "check that the project was made by 'rlhp-jax toloka setup' for this config")
    return CrowdError(f"toloka {what}: Toloka refused it ({error.status_code} {error.code}: "
                      f"{message}{'; ' + payload if payload else ''}); {hint}")
  return error


class TolokaGatherer:
  """Labels pairs with Toloka crowd workers; see the module docstring. Takes its own config
  sections (``toloka``, ``storage``, ``clips``) and the env's step ``env_dt`` (clip timing)."""

  def __init__(self, toloka_cfg, storage_cfg, clips_cfg, run_dir: str, *, env_dt: float,
               client=None, storage=None, sleep=time.sleep, clock=time.time):
    toloka_cfg.check_ready()
    storage_cfg.check_ready()
    self.tcfg, self.clips_cfg, self.env_dt = toloka_cfg, clips_cfg, env_dt
    self.run_dir = run_dir
    self.client = client if client is not None else make_client(toloka_cfg.url,
                                                                token_from_env())
    self.storage = storage or make_storage(storage_cfg, run_dir, os.path.basename(run_dir))
    self.store = label_store.LabelStore(run_dir)
    self.clip_dir = os.path.join(run_dir, "clips")
    self.sleep, self.clock = sleep, clock
    self.stats = {"skipped_no_answer": 0, "dropped_failed_to_load": 0, "unknown_answers": 0}
    self._progress_failed = False

  # -- the Gatherer interface ---------------------------------------------------------------
  def label(self, query, iteration: int):
    """query: one run's ``Query`` with numpy leaves. Returns (label [P], valid [P])."""
    mask = np.asarray(query.mask)
    label = np.zeros(mask.shape, np.float32)
    valid = np.zeros(mask.shape, bool)
    if self.store.last_event("iteration_dropped", iteration=iteration) is not None:
      self._close_open_pools(iteration)
      log.warning(f"toloka: iteration {iteration}: its pairs were dropped (rlhp-jax labels "
               "drop-iteration); training on none of them")
      return label, valid
    fingerprints = clips.fingerprints(query, iteration)
    label_store.check_pairs(self.store, iteration, fingerprints, self.run_dir)
    # Pools an interrupted run opened are finished first: answers it had not stored yet (a
    # download cut short) are paid for and must be kept, even for pairs already usable.
    for opened in self.store.events("pool_opened", iteration=iteration):
      if self.store.last_event("pool_closed", pool_id=opened["pool_id"]) is None:
        self._wait(opened["pool_id"], iteration,
                   {"iteration": iteration, "round": opened["round"]})
    todo = [pid for pid in fingerprints if not self._usable(pid, iteration)]
    keys = self._upload(query, iteration, todo)
    for round_ in range(self.tcfg.requeue_rounds + 1):
      if not todo:
        break
      self._run_pool(iteration, round_, todo, keys, fingerprints)
      answers = self.store.answers(iteration=iteration, source=SOURCE)
      failed = aggregate.only_failed(answers)
      todo = [pid for pid in todo if pid in failed]
      if todo and round_ < self.tcfg.requeue_rounds:
        log.warning(f"toloka: {len(todo)} pair(s) only 'failed to load'; asking again")
    answers = self.store.answers(iteration=iteration, source=SOURCE)
    probs = aggregate.preference_probabilities(answers, self.tcfg.aggregator,
                                               self.tcfg.soft_labels)
    for pid in fingerprints:
      if pid in probs:
        i = clips.pair_index(pid)
        label[i], valid[i] = probs[pid], True
    dropped = len(aggregate.only_failed(answers) & set(fingerprints))
    unanswered = sum(1 for pid in fingerprints if pid not in probs) - dropped
    self.stats["dropped_failed_to_load"] += dropped
    self.stats["skipped_no_answer"] += unanswered
    if dropped or unanswered:
      log.warning(f"toloka: iteration {iteration}: {dropped} pair(s) dropped (only 'failed to "
               f"load'), {unanswered} without answers; training on {int(valid.sum())}")
    return label, valid

  def _usable(self, pid: str, iteration: int) -> bool:
    return any(a["answer"] in (label_store.LEFT, label_store.RIGHT)
               for a in self.store.answers(iteration=iteration, pair_id=pid))

  def _upload(self, query, iteration: int, pair_ids: list[str]) -> dict:
    """Renders and stores the clips of ``pair_ids``; returns {pair_id: (left key, right
    key)}. Clips already rendered or uploaded (a resumed batch) are not done again."""
    if not pair_ids:
      return {}
    drawn = clips.render_asked(query, iteration, self.clip_dir, self.clips_cfg, self.env_dt,
                               indices=[clips.pair_index(pid) for pid in pair_ids])
    return {c["pair_id"]: (self.storage.put(c["left"]), self.storage.put(c["right"]))
            for c in drawn}

  # -- calls ----------------------------------------------------------------------------------
  def _call(self, what, fn):
    """``fn()`` with retries of transient errors; other client errors become one line."""
    try:
      return retry_call(fn, what=f"toloka {what}", budget_s=self.tcfg.retry_budget_s,
                        sleep=self.sleep)
    except Exception as e:  # noqa: BLE001 - translated below
      translated = translate(what, e)
      if translated is e:
        raise
      raise translated from e

  def _wait_operation(self, op, what, max_polls: int | None = None):
    """Polls an operation until it finishes (or ``max_polls`` polls: then None)."""
    polls = 0
    while op is not None and not op.is_completed():
      if max_polls is not None and polls >= max_polls:
        return None
      self.sleep(min(self.tcfg.poll_interval_s, 1.0))
      op_id = op.id
      op = self._call(what, lambda: self.client.get_operation(op_id))
      polls += 1
    return op

  # -- one pool -------------------------------------------------------------------------------
  def _run_pool(self, iteration: int, round_: int, pair_ids: list[str], keys: dict,
                fingerprints: dict) -> None:
    where = {"iteration": iteration, "round": round_}
    cloned = self.store.last_event("pool_cloned", **where)
    if cloned is None:
      pool_id = self._clone(where)
    else:
      pool_id = cloned["pool_id"]
      log.info(f"toloka: re-attaching to pool {pool_id} (iteration {iteration})")
    if self.store.last_event("pool_opened", pool_id=pool_id) is None:
      if self.store.last_event("pool_configured", pool_id=pool_id) is None:
        self._configure(pool_id, iteration, round_)
        self.store.add_event("pool_configured", pool_id=pool_id, **where)
      self._create_tasks(pool_id, pair_ids, keys, fingerprints, where)
      faults.kill_point("toloka:open_pool:before")
      op = self._call("open_pool", lambda: self.client.open_pool_async(pool_id))
      self._wait_operation(op, "open_pool")
      self.store.add_event("pool_opened", pool_id=pool_id, pairs=len(pair_ids), **where)
    self._wait(pool_id, iteration, where)

  def _clone(self, where: dict) -> str:
    """Clones the base pool; an unrecorded clone of an interrupted attempt is archived."""
    base_id = self.tcfg.base_pool_id
    requested = self.store.last_event("clone_requested", **where)
    if requested is not None:
      self._archive_orphans(requested["time"], keep=None)
    requested = self.store.add_event("clone_requested", base_pool_id=base_id, **where)
    retried = []

    def clone():
      faults.kill_point("toloka:clone:before")
      op = self.client.clone_pool_async(base_id)
      faults.kill_point("toloka:clone:after")
      return op

    try:
      op = retry_call(clone, what="toloka clone_pool", budget_s=self.tcfg.retry_budget_s,
                      sleep=self.sleep, on_retry=retried.append)
    except Exception as e:  # noqa: BLE001
      translated = translate("clone_pool", e)
      if translated is e:
        raise
      raise translated from e
    op = self._wait_operation(op, "clone_pool")
    pool_id = str(op.details.pool_id)
    self.store.add_event("pool_cloned", pool_id=pool_id, **where)
    if retried:  # a clone request that failed on the way back may still have cloned
      self._archive_orphans(requested["time"], keep=pool_id)
    return pool_id

  def _archive_orphans(self, since: float, keep: str | None) -> None:
    """Archives clones of the base pool made since ``since`` that this run never recorded:
    still named as the base pool, never opened, no tasks. Never touches a recorded pool."""
    base = self._call("get_pool", lambda: self.client.get_pool(self.tcfg.base_pool_id))
    known = {e["pool_id"] for e in self.store.events("pool_cloned")}
    after = datetime.datetime.fromtimestamp(since - ORPHAN_WINDOW_S, datetime.timezone.utc)
    candidates = self._call("find_pools", lambda: list(self.client.get_pools(
        project_id=base.project_id, status="CLOSED", created_gte=after)))
    for pool in candidates:
      if (pool.id in known or pool.id in (keep, base.id)
          or pool.private_name != base.private_name or pool.last_started is not None):
        continue
      pool_id = pool.id
      has_tasks = self._call("find_tasks", lambda: self.client.find_tasks(
          pool_id=pool_id, limit=1)).items
      if has_tasks:
        continue
      op = self._call("archive_pool", lambda: self.client.archive_pool_async(pool_id))
      self._wait_operation(op, "archive_pool")
      self.store.add_event("orphan_archived", pool_id=pool_id)
      log.warning(f"toloka: archived pool {pool_id}, an unrecorded clone of an interrupted run "
               "(never opened, no tasks)")

  def _configure(self, pool_id: str, iteration: int, round_: int) -> None:
    pool = self._call("get_pool", lambda: self.client.get_pool(pool_id))
    pool.set_mixer_config(real_tasks_count=self.tcfg.tasks_per_page,
                          golden_tasks_count=0, training_tasks_count=0)
    pool.private_name = f"{os.path.basename(self.run_dir)} iteration {iteration}" + (
        f" retry {round_}" if round_ else "")
    pool.defaults = type(pool).Defaults(
        default_overlap_for_new_tasks=self.tcfg.overlap,
        default_overlap_for_new_task_suites=self.tcfg.overlap)
    self._call("update_pool", lambda: self.client.update_pool(pool_id, pool))

  def _create_tasks(self, pool_id, pair_ids, keys, fingerprints, where) -> None:
    """One idempotent task-creation operation per pool (see the module docstring)."""
    import toloka.client as toloka
    if self.store.last_event("tasks_created", pool_id=pool_id) is not None:
      return
    requested = self.store.last_event("tasks_requested", pool_id=pool_id)
    if requested is None:
      requested = self.store.add_event(
          "tasks_requested", pool_id=pool_id, pairs=list(pair_ids),
          operation_id=operation_id(pool_id, where["iteration"], where["round"]),
          fingerprints={pid: fingerprints[pid] for pid in pair_ids}, **where)
    pairs, op_id = requested["pairs"], requested["operation_id"]
    missing = [pid for pid in pairs if pid not in keys]
    if missing:
      raise CrowdError(f"toloka: pool {pool_id}: pairs {missing} were requested but have no "
                       "clips now; drop the iteration: rlhp-jax labels drop-iteration "
                       f"{self.run_dir} {where['iteration']}")
    tasks = [toloka.Task(pool_id=pool_id, overlap=self.tcfg.overlap,
                         input_values={INPUT_LEFT: self.storage.url(keys[pid][0]),
                                       INPUT_RIGHT: self.storage.url(keys[pid][1])})
             for pid in pairs]

    def create():
      faults.kill_point("toloka:create_tasks:before")
      op = self.client.create_tasks_async(
          tasks, operation_id=uuid.UUID(op_id), allow_defaults=True, open_pool=False,
          skip_invalid_items=False)
      faults.kill_point("toloka:create_tasks:after")
      return op

    op = self._wait_operation(self._call("create_tasks", create), "create_tasks")
    if str(getattr(op.status, "value", op.status)) != "SUCCESS":
      log = self._call("get_operation_log", lambda: self.client.get_operation_log(op.id))
      errors = [item.output for item in log if not item.success][:3]
      raise CrowdError(f"toloka create_tasks: Toloka rejected the tasks ({errors}); does the "
                       f"project's input spec have {INPUT_LEFT!r} and {INPUT_RIGHT!r} URL "
                       "fields? (rlhp-jax toloka setup makes such a project)")
    by_pair: dict[str, list[str]] = {}
    for task in self._call("get_tasks", lambda: list(self.client.get_tasks(pool_id=pool_id))):
      by_pair.setdefault(pair_of_url(task.input_values.get(INPUT_LEFT, "")), []).append(task.id)
    absent = [pid for pid in pairs if pid not in by_pair]
    if absent:
      raise CrowdError(f"toloka: pool {pool_id}: operation {op_id} finished but pairs {absent} "
                       "have no task; check the pool in Toloka's web interface")
    self.store.add_event("tasks_created", pool_id=pool_id, pairs=pairs, operation_id=op_id,
                         task_ids=[by_pair[pid][0] for pid in pairs], **where)

  # -- waiting --------------------------------------------------------------------------------
  def _wait(self, pool_id: str, iteration: int, where: dict) -> None:
    """Polls until the pool closes (or times out, then is closed by us), storing answers as
    they arrive; then drains late answers of pages already taken."""
    if self.store.last_event("pool_closed", pool_id=pool_id) is not None:
      self._download(pool_id, iteration)
      return
    opened = self.store.last_event("pool_opened", pool_id=pool_id)
    deadline = opened["time"] + self.tcfg.timeout_s
    timed_out = self.store.last_event("pool_timed_out", pool_id=pool_id)
    reason, start = None, self.clock()
    outage_since = None
    while timed_out is None:
      try:
        pool = self._poll_once(pool_id, iteration)
      except Exception as e:  # noqa: BLE001 - transient ones are ridden out
        if not is_transient(e):
          translated = translate("get_pool", e)
          if translated is e:
            raise
          raise translated from e
        outage_since = self.clock() if outage_since is None else outage_since
        lasted = self.clock() - outage_since
        if lasted > self.tcfg.outage_timeout_s:
          raise RetriesExhausted(
              f"toloka: polling pool {pool_id} failed for {lasted:.0f}s ({describe(e)}); "
              "check the network and Toloka's status, then resume the run") from e
        log.warning(f"toloka: poll of pool {pool_id} failed ({describe(e)}); outage "
                 f"{lasted:.0f}s so far, next try in {self.tcfg.poll_interval_s:g}s")
        self.sleep(self.tcfg.poll_interval_s)
        continue
      outage_since = None
      if pool.is_closed():
        reason = str(getattr(pool.last_close_reason, "value", pool.last_close_reason))
        break
      if self.clock() > deadline:
        log.warning(f"toloka: pool {pool_id} still open after {self.tcfg.timeout_s:.0f}s; "
                 "closing it and going on with the answers so far")
        op = self._call("close_pool", lambda: self.client.close_pool_async(pool_id))
        self._wait_operation(op, "close_pool")
        timed_out = self.store.add_event("pool_timed_out", pool_id=pool_id, **where)
        break
      self._progress(pool_id, start)
      self.sleep(self.tcfg.poll_interval_s)
    if timed_out is not None or reason != "COMPLETED":
      self._drain(pool_id, iteration, timed_out["time"] if timed_out else self.clock())
    self._download(pool_id, iteration)
    reason = reason or "TIMED_OUT"
    self.store.add_event("pool_closed", pool_id=pool_id, reason=reason, **where)
    n = len(self.store.answers(iteration=iteration, source=SOURCE))
    if reason in CLOSE_REASONS:
      why = CLOSE_REASONS[reason]
      if reason in STOPPING_REASONS:
        raise CrowdError(f"toloka: pool {pool_id} was closed by Toloka: {reason} ({why}); the "
                         f"{n} answer(s) so far are stored")
      log.warning(f"toloka: pool {pool_id} was closed: {reason} ({why}); going on with {n} "
               "answer(s)")
    else:
      log.info(f"toloka: pool {pool_id} closed ({reason}); {n} answer(s) stored for "
               f"iteration {iteration}")

  def _poll_once(self, pool_id: str, iteration: int):
    pool = self.client.get_pool(pool_id)
    self._download(pool_id, iteration, retry=False)
    return pool

  def _drain(self, pool_id: str, iteration: int, closed_at: float) -> None:
    """After a pool closed for any reason but completion: workers who took a page before may
    still submit it (and are paid); download until no assignment is active, or until the
    assignment duration has passed since the close."""
    pool = self._call("get_pool", lambda: self.client.get_pool(pool_id))
    limit = closed_at + float(pool.assignment_max_duration_seconds or 0) + 60.0
    while True:
      self._download(pool_id, iteration)
      active = self._call("find_assignments", lambda: self.client.find_assignments(
          pool_id=pool_id, status="ACTIVE", limit=1)).items
      if not active:
        return
      if self.clock() > limit:
        log.warning(f"toloka: pool {pool_id}: assignments still active "
                 f"{self.clock() - closed_at:.0f}s after closing; going on without them")
        return
      self.sleep(self.tcfg.poll_interval_s)

  def _close_open_pools(self, iteration: int) -> None:
    for event in self.store.events("pool_opened", iteration=iteration):
      pool_id = event["pool_id"]
      if self.store.last_event("pool_closed", pool_id=pool_id) is None:
        op = self._call("close_pool", lambda: self.client.close_pool_async(pool_id))
        self._wait_operation(op, "close_pool")
        self._download(pool_id, iteration)
        self.store.add_event("pool_closed", pool_id=pool_id, reason="DROPPED",
                             iteration=iteration, round=event.get("round"))

  def _progress(self, pool_id: str, start: float) -> None:
    """One progress line from the pool's completion analytics; never stops the run."""
    from toloka.client.analytics_request import CompletionPercentagePoolAnalytics
    try:
      op = self.client.get_analytics([CompletionPercentagePoolAnalytics(subject_id=pool_id)])
      op = self._wait_operation(op, "analytics", max_polls=3)
      percent = float(op.details["value"][0]["result"]["value"])
    except Exception as e:  # noqa: BLE001 - only the progress bar is lost
      if not self._progress_failed:
        log.warning(f"toloka: progress unavailable ({describe(e)}); still waiting for answers")
      self._progress_failed = True
      return
    self._progress_failed = False
    filled = int(percent / 5)
    log.info(f"toloka: pool {pool_id} [{'#' * filled}{'.' * (20 - filled)}] {percent:5.1f}% "
             f"({self.clock() - start:.0f}s)")

  def _download(self, pool_id: str, iteration: int, retry: bool = True) -> int:
    """Stores every submitted/accepted answer of the pool (idempotent); returns new ones."""
    fetch = lambda: list(self.client.get_assignments(  # noqa: E731
        pool_id=pool_id, status=["SUBMITTED", "ACCEPTED"]))
    assignments = self._call("get_assignments", fetch) if retry else fetch()
    records = []
    for a in assignments:
      for i, (task, solution) in enumerate(zip(a.tasks, a.solutions or [])):
        pid = pair_of_url(task.input_values.get(INPUT_LEFT, ""))
        raw = (solution.output_values or {}).get(OUTPUT_FIELD)
        if pid is None or raw not in TOLOKA_ANSWERS:
          self.stats["unknown_answers"] += 1
          continue
        answer_id = f"{a.id}/{task.id or i}"
        if self.store.has_answer(answer_id):
          continue
        submitted = a.submitted or a.created
        records.append(dict(
            answer_id=answer_id, pair_id=pid, iteration=iteration,
            pair=clips.pair_index(pid), answer=TOLOKA_ANSWERS[raw], worker=a.user_id,
            source=SOURCE, time_s=submitted.timestamp() if submitted else None,
            pool_id=pool_id, task_id=task.id, assignment_id=a.id, raw=raw))
    half = len(records) // 2
    new = self.store.add_answers(records[:half])
    if records:
      faults.kill_point("download:half")
    return new + self.store.add_answers(records[half:])

  def close(self) -> None:
    if any(self.stats.values()):
      log.warning(f"toloka: totals {self.stats}")
