"""A local Toloka stand-in: a real HTTP peer for the toloka-kit client, with simulated workers.

Test code (``tests/support``; not shipped in the package). Its answer and worker-kind constants
are prefixed (``ANSWER_LEFT``, ``WORKER_FAILED``) so they never pass for the label store's
``LEFT`` / ``FAILED``.

Toloka's sandbox is gone, so the crowd path is tested against this server instead. It speaks the
JSON API that ``toloka.client.TolokaClient(token, url=standin.url, retries=0)`` (toloka-kit 1.2.3)
calls, keeps everything in memory, and lets a crowd of simulated workers answer the tasks of open
pools. It runs ``http.server.ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a daemon thread::

    with TolokaStandIn(num_workers=20, oracle=lambda iv: 1.0) as standin:
      client = toloka.client.TolokaClient(standin.token, url=standin.url, retries=0)
      ...
      standin.advance()            # workers finish every open pool; or pass auto_advance=k

Routes (all under ``/api``; every request needs ``Authorization: OAuth <token>``):

    GET    /v1/requester                                         get_requester
    POST   /v1/projects, GET /v1/projects[/{id}], PUT /v1/projects/{id}     projects
    POST   /v1/trainings, GET /v1/trainings[/{id}], PUT /v1/trainings/{id}  trainings
    POST   /v1/trainings/{id}/{open,close,close-for-update,archive,clone}   (async operations)
    POST   /v1/pools, GET /v1/pools[/{id}], PUT, PATCH /v1/pools/{id}      pools
    POST   /v1/pools/{id}/{open,close,close-for-update,archive,clone}       (async operations;
                                  204 when the pool already is in the asked state, as Toloka does)
    POST   /v1/tasks  (one task or a list; async_mode, allow_defaults, skip_invalid_items,
                       open_pool, operation_id)                      create_task(s)[_async]
    GET    /v1/tasks[/{id}]                                          get_task(s), find_tasks
    GET    /v1/operations/{id}, GET /v1/operations/{id}/log          get_operation, wait_operation
    POST   /staging/analytics-2                                      get_analytics (pool metrics)
    GET    /v1/assignments[/{id}], PATCH /v1/assignments/{id}         get/find/accept/reject
    POST   /v1/skills, GET /v1/skills[/{id}], PUT /v1/skills/{id}     skills

Lists take Toloka's search parameters: equality filters (``pool_id``, ``project_id``, ``status``
(comma-separated for assignments), ...), ``<field>_{lt,lte,gt,gte}`` on ids, dates and overlap,
``sort`` (``id``, ``-created``, ...) and ``limit`` (default 50), and answer
``{"items": [...], "has_more": bool}``; the client's iterators page with ``sort=id`` and
``id_gt=<last id>``. Ids are fixed-width so that string order is creation order within a pool.

Errors are Toloka's JSON bodies ``{"code", "message", "request_id"[, "payload"]}``, which the
client turns into ``toloka.client.exceptions.*``: 401 AUTHENTICATION_ERROR (wrong or missing
token), 404 DOES_NOT_EXIST, 400 VALIDATION_ERROR (payload: field -> {code, message}; per task
index for task batches), 409 CONFLICT_STATE / OPERATION_ALREADY_EXISTS, 501 for routes this
stand-in does not implement. ``inject_failures`` makes chosen requests fail with 429/500/503,
either before they are handled or (``after=True``) after: the request took effect but its answer
is lost, as when a connection drops on the way back.

Asynchronous operations. By default an operation is born finished (SUCCESS), so
``wait_operation`` returns without polling; with ``operation_polls=k`` it is PENDING when
created, RUNNING on polls 1..k-1 and finished from poll k on (so the client's ``wait_operation``
really polls; it sleeps 0.5 s before its first poll and 1 s between polls). A task-creation
operation then also *takes effect* only when it finishes, as on Toloka, where a batch is created
in the background: when a client has polled it k times, or, polled or not, once 2k more requests
of any kind reached the stand-in (time went by). Until then the pool has none of its tasks. Its
``operation_id`` makes the request idempotent: the same id again answers 409
OPERATION_ALREADY_EXISTS and creates nothing (toloka-kit then reads the existing operation).
Other pool and training actions take effect at once.

Simulated workers: ``num_workers`` workers, of whom ``round(num_workers * spammer_share)`` are
spammers (left/right uniformly at random), ``round(num_workers * failed_share)`` are "failed"
(always ``"error"``: the clips did not load) and the rest honest: they answer ``"left"`` with
probability ``oracle(input_values)`` and then flip the answer with probability ``noise``. With
``fetch_videos=True`` every non-failed worker first GETs each http(s) URL among the task's input
values and answers ``"error"`` if one does not load. Each answer draws from its own generator
seeded by (seed, task id, worker id), so answers do not depend on when work happens.

Work happens only when the simulated clock moves: ``advance(n)`` lets workers submit n task
suites (None: until no worker can take any more); ``take(n)`` lets workers take n suites
without submitting them yet (ACTIVE assignments, submitted by the next ``advance``, even if the
pool closed meanwhile: Toloka lets a worker finish a page taken before the close). A suite is up to the pool's
``mixer_config.real_tasks_count`` open tasks that the worker has not answered yet, taken in
creation order; workers take turns round-robin, so each task gets ``overlap`` answers from
distinct workers. A pool whose every task has all its answers closes (COMPLETED), as Toloka
auto-closes. ``auto_advance=k`` runs k suites of a pool on every poll of it (GET of the pool,
an analytics request about it, or the first page of an assignment list).

Money: each submitted suite takes the pool's reward from ``balance``; a pool whose next suite
the balance cannot pay is closed with NOT_ENOUGH_BALANCE. ``close_pool(pool_id, reason)`` closes
a pool as Toloka would for another reason (EXPIRED, BLOCKED, ...).

Not simulated: quality control and filters (stored and returned, never enforced), trainings
(workers never take them), control tasks (tasks with ``known_solutions`` are stored but not
served), task suites created explicitly, skipped/expired assignments, the TSV assignment export.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import http.server
import json
import math
import random
import re
import threading
import traceback
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable

ANSWER_LEFT, ANSWER_RIGHT, ANSWER_ERROR = "left", "right", "error"
"""The answers of the seed project's output field: the left / right clip is better, or the clips
failed to load."""
WORKER_HONEST, WORKER_SPAMMER, WORKER_FAILED = "honest", "spammer", "failed"
WORKER_KINDS = (WORKER_HONEST, WORKER_SPAMMER, WORKER_FAILED)

OPEN, CLOSED, ARCHIVED = "OPEN", "CLOSED", "ARCHIVED"
SUBMITTED, ACCEPTED, REJECTED = "SUBMITTED", "ACCEPTED", "REJECTED"

_REQUIRED = {"code": "VALUE_REQUIRED", "message": "Value must be present and not equal to null"}
_FAILURE_CODES = {429: "TOO_MANY_REQUESTS", 500: "INTERNAL_ERROR",
                  503: "REMOTE_SERVICE_UNAVAILABLE"}
_CONTAINER_READONLY = ("id", "status", "last_close_reason", "created", "last_started",
                       "last_stopped", "type", "owner")
_TASK_READONLY = ("id", "created", "remaining_overlap", "origin_task_id")
_SECONDS_PER_TASK = {WORKER_HONEST: 12, WORKER_SPAMMER: 1, WORKER_FAILED: 3}
"""Simulated time a worker of each kind spends on one task (spammers click through)."""
_POOL_METRICS = ("real_tasks_count", "submitted_assignments_count", "skipped_assignments_count",
                 "rejected_assignments_count", "approved_assignments_count",
                 "completion_percentage", "avg_submit_assignment_millis", "spent_budget",
                 "unique_workers_count", "unique_submitters_count",
                 "active_workers_by_filter_count", "estimated_assignments_count")


class ApiFailure(Exception):
  """An error answer: the HTTP status and Toloka's error code, message and payload."""

  def __init__(self, status: int, code: str, message: str, payload: Any = None):
    super().__init__(f"{status} {code}: {message}")
    self.status, self.code, self.message, self.payload = status, code, message, payload

  def body(self) -> dict:
    out = {"code": self.code, "message": self.message, "request_id": uuid.uuid4().hex}
    if self.payload is not None:
      out["payload"] = self.payload
    return out


def _not_found(kind: str, object_id: str) -> ApiFailure:
  return ApiFailure(404, "DOES_NOT_EXIST", f"{kind} with id {object_id!r} does not exist")


def _invalid(errors: dict) -> ApiFailure:
  return ApiFailure(400, "VALIDATION_ERROR", "Validation failed", errors)


def _conflict(message: str) -> ApiFailure:
  return ApiFailure(409, "CONFLICT_STATE", message)


@dataclasses.dataclass
class _Failure:
  """An injected fault: the next ``times`` matching requests answer ``status``."""
  status: int
  times: int
  path_contains: str
  method: str | None
  retry_after: int
  empty_body: bool
  after: bool = False


def _utcnow() -> datetime.datetime:
  return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _iso(t: datetime.datetime) -> str:
  """Toloka's time format: naive UTC, milliseconds."""
  return t.isoformat(timespec="milliseconds")


def _parse_time(value: str) -> datetime.datetime:
  t = datetime.datetime.fromisoformat(str(value))
  if t.tzinfo is not None:
    t = t.astimezone(datetime.timezone.utc).replace(tzinfo=None)
  return t


def _id_key(value: Any) -> tuple[int, str]:
  """Order of ids: numeric strings by value, fixed-width hex ids by their text."""
  s = str(value)
  return len(s), s


def _comparable(field: str, value: Any):
  if field == "id" or field.endswith("_id"):
    return _id_key(value)
  if field == "overlap":
    return int(value)
  return _parse_time(value)


def _dig(obj: Any, path: str) -> Any:
  for key in path.split("."):
    if not isinstance(obj, dict):
      return None
    obj = obj.get(key)
  return obj


def _missing(body: dict, paths: tuple[str, ...]) -> dict:
  return {path: dict(_REQUIRED) for path in paths if _dig(body, path) is None}


def _flag(query: dict, name: str, default: bool = False) -> bool:
  value = query.get(name)
  return default if value is None else value.lower() == "true"


def _is_loopback(url: str) -> bool:
  return urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


class TolokaStandIn:
  """In-memory Toloka API on 127.0.0.1 with a simulated crowd; see the module docstring.

  Public state (read it under ``with standin.lock:`` while a client may be running):
    url, token: where and how the client connects.
    requests: every request as (method, path), path without the query string.
    tasks_created: task objects ever created (valid ones, all pools).
    projects, trainings, pools, tasks, assignments, operations, skills: id -> stored JSON.
    workers: worker (user) id -> kind ("honest" / "spammer" / "failed"), in round-robin order.
    video_fetches: (url, ok) for every clip a worker fetched (``fetch_videos=True``).
    errors: tracebacks of handler crashes (answered as 500 INTERNAL_ERROR); tests assert none.
  """

  def __init__(self, token: str = "standin-token", *, num_workers: int = 20,
               spammer_share: float = 0.1, failed_share: float = 0.05, noise: float = 0.1,
               seed: int = 0, oracle: Callable[[dict], float] | None = None,
               fetch_videos: bool = False, fetch_timeout_s: float = 5.0, auto_advance: int = 0,
               operation_polls: int = 0, balance: float = 1000.0):
    """
    Args:
      token: the OAuth token the client must send.
      num_workers: size of the simulated crowd.
      spammer_share, failed_share: shares of spammers and of workers whose clips never load.
      noise: probability that an honest worker flips the answer the oracle suggests.
      seed: seeds worker kinds, ids and every answer.
      oracle: input_values -> P(left is better); default 0.5 (a coin).
      fetch_videos: workers GET the tasks' http(s) URLs and answer "error" if one fails.
      fetch_timeout_s: timeout of one such GET.
      auto_advance: suites of a pool completed on every poll of it (0: only ``advance``).
      operation_polls: the poll (GET) at which a new operation finishes (0: born finished).
      balance: the requester's starting balance (assignments' rewards are taken from it).
    """
    if not isinstance(num_workers, int) or num_workers < 1:
      raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")
    for name, share in (("spammer_share", spammer_share), ("failed_share", failed_share),
                        ("noise", noise)):
      if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {share!r}")
    if auto_advance < 0 or operation_polls < 0:
      raise ValueError("auto_advance and operation_polls must be >= 0")
    self.token = token
    self.noise = noise
    self.seed = seed
    self.oracle = oracle or (lambda input_values: 0.5)
    self.fetch_videos = fetch_videos
    self.fetch_timeout_s = fetch_timeout_s
    self.auto_advance = auto_advance
    self.operation_polls = operation_polls
    self.balance = float(balance)
    self.requester_id = hashlib.sha256(f"standin-requester-{seed}".encode()).hexdigest()[:32]
    self.workers = self._make_workers(num_workers, spammer_share, failed_share)
    self.url = ""
    self.lock = threading.RLock()
    self.requests: list[tuple[str, str]] = []
    self.tasks_created = 0
    self.errors: list[str] = []
    self.video_fetches: list[tuple[str, bool]] = []
    self.projects: dict[str, dict] = {}
    self.trainings: dict[str, dict] = {}
    self.pools: dict[str, dict] = {}
    self.tasks: dict[str, dict] = {}
    self.assignments: dict[str, dict] = {}
    self.operations: dict[str, dict] = {}
    self.skills: dict[str, dict] = {}
    self._op_logs: dict[str, list[dict]] = {}
    self._op_polls: dict[str, int] = {}
    self._op_effects: dict[str, Callable[[], None]] = {}
    self._op_age: dict[str, int] = {}
    self._pool_tasks: dict[str, list[str]] = {}
    self._pool_assignments: dict[str, list[str]] = {}
    self._answered_by: dict[str, list[str]] = {}
    self._failures: list[_Failure] = []
    self._counters = {"project": 10000, "pool": 1000000, "skill": 50000, "object": 0}
    self._clock = _utcnow()
    self._next_worker = 0
    self._server: http.server.ThreadingHTTPServer | None = None
    self._thread: threading.Thread | None = None
    self._routes = self._make_routes()

  # -- lifecycle

  def start(self) -> "TolokaStandIn":
    """Serve on 127.0.0.1 at a free port in a daemon thread; sets ``url``."""
    if self._server is not None:
      return self
    handler = type("_BoundHandler", (_Handler,), {"standin": self})
    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    self._server.daemon_threads = True
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
    self._thread = threading.Thread(target=self._server.serve_forever,
                                    kwargs={"poll_interval": 0.05}, name="toloka-standin",
                                    daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    if self._server is None:
      return
    self._server.shutdown()
    self._server.server_close()
    self._thread.join(timeout=5)
    self._server = self._thread = None

  def __enter__(self) -> "TolokaStandIn":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  # -- test controls

  def inject_failures(self, status: int = 500, times: int = 1, path_contains: str = "",
                      method: str | None = None, retry_after: int = 1,
                      empty_body: bool = False, after: bool = False) -> None:
    """The next ``times`` requests whose path contains ``path_contains`` (and whose method is
    ``method``, if given) answer ``status`` with Toloka's error body (429: TOO_MANY_REQUESTS
    plus ``Retry-After: retry_after``; 500: INTERNAL_ERROR; 503: REMOTE_SERVICE_UNAVAILABLE).
    ``empty_body`` sends no body (the client raises httpx's HTTPStatusError then). ``after``:
    handle the request first (it takes effect), then answer the failure instead."""
    with self.lock:
      self._failures.append(_Failure(status, times, path_contains,
                                     method.upper() if method else None, retry_after, empty_body,
                                     after))

  def advance(self, n_assignments: int | None = None, pool_id: str | None = None) -> int:
    """Let workers submit up to ``n_assignments`` task suites (None: all they can): first the
    suites they took (``take``), in any pool, then new ones in open pools (only ``pool_id`` if
    given); returns how many were submitted."""
    with self.lock:
      done = 0
      while n_assignments is None or done < n_assignments:
        if not (self._submit_taken(pool_id) or self._work_one(pool_id)):
          break
        done += 1
      return done

  def take(self, n_assignments: int = 1, pool_id: str | None = None) -> int:
    """Let workers take up to ``n_assignments`` suites of open pools without submitting them
    (ACTIVE assignments); returns how many were taken."""
    with self.lock:
      done = 0
      while done < n_assignments and self._work_one(pool_id, submit=False):
        done += 1
      return done

  def close_pool(self, pool_id: str, reason: str = "EXPIRED") -> None:
    """Closes a pool as Toloka does on its own (EXPIRED, NOT_ENOUGH_BALANCE, BLOCKED, ...)."""
    with self.lock:
      pool = self._lookup(self.pools, "Pool", pool_id)
      if pool["status"] == OPEN:
        self._close(pool, reason)

  def pool_tasks(self, pool_id: str) -> list[dict]:
    with self.lock:
      return [copy.deepcopy(self.tasks[t]) for t in self._pool_tasks.get(pool_id, [])]

  def pool_assignments(self, pool_id: str) -> list[dict]:
    with self.lock:
      return [copy.deepcopy(self.assignments[a]) for a in self._pool_assignments.get(pool_id, [])]

  def answers(self, pool_id: str | None = None) -> list[dict]:
    """Every answer so far as {task_id, input_values, user_id, kind, answer, assignment_id}."""
    with self.lock:
      out = []
      for a in self.assignments.values():
        if pool_id is not None and a["pool_id"] != pool_id:
          continue
        for task, solution in zip(a["tasks"], a["solutions"] or []):
          answer = next(iter(solution["output_values"].values()))
          out.append({"task_id": task["id"], "input_values": task["input_values"],
                      "user_id": a["user_id"], "kind": self.workers[a["user_id"]],
                      "answer": answer, "assignment_id": a["id"]})
      return out

  # -- request dispatch

  def _make_routes(self) -> list[tuple[str, re.Pattern, Callable]]:
    oid = r"(?P<id>[^/]+)"
    table = [
        ("GET", r"/v1/requester", self._get_requester),
        ("POST", r"/v1/projects", self._create_project),
        ("GET", r"/v1/projects", self._find_projects),
        ("GET", rf"/v1/projects/{oid}", self._get_project),
        ("PUT", rf"/v1/projects/{oid}", self._update_project),
        ("POST", r"/v1/trainings", self._create_training),
        ("GET", r"/v1/trainings", self._find_trainings),
        ("GET", rf"/v1/trainings/{oid}", self._get_training),
        ("PUT", rf"/v1/trainings/{oid}", self._update_training),
        ("POST", rf"/v1/trainings/{oid}/(?P<action>[a-z-]+)", self._training_action),
        ("POST", r"/v1/pools", self._create_pool),
        ("GET", r"/v1/pools", self._find_pools),
        ("GET", rf"/v1/pools/{oid}", self._get_pool),
        ("PUT", rf"/v1/pools/{oid}", self._update_pool),
        ("PATCH", rf"/v1/pools/{oid}", self._patch_pool),
        ("POST", rf"/v1/pools/{oid}/(?P<action>[a-z-]+)", self._pool_action),
        ("POST", r"/v1/tasks", self._create_tasks),
        ("GET", r"/v1/tasks", self._find_tasks),
        ("GET", rf"/v1/tasks/{oid}", self._get_task),
        ("GET", rf"/v1/operations/{oid}", self._get_operation),
        ("GET", rf"/v1/operations/{oid}/log", self._get_operation_log),
        ("POST", r"/staging/analytics-2", self._analytics),
        ("GET", r"/v1/assignments", self._find_assignments),
        ("GET", rf"/v1/assignments/{oid}", self._get_assignment),
        ("PATCH", rf"/v1/assignments/{oid}", self._patch_assignment),
        ("POST", r"/v1/skills", self._create_skill),
        ("GET", r"/v1/skills", self._find_skills),
        ("GET", rf"/v1/skills/{oid}", self._get_skill),
        ("PUT", rf"/v1/skills/{oid}", self._update_skill),
    ]
    return [(method, re.compile(f"/api{pattern}"), fn) for method, pattern, fn in table]

  def handle(self, method: str, path: str, query: str, authorization: str | None,
             raw_body: bytes) -> tuple[int, Any, dict]:
    """One request -> (status, JSON body or None, extra headers). Called by the HTTP handler."""
    with self.lock:
      self.requests.append((method, path))
      self._time_passes()
      failure = self._take_failure(method, path, after=False)
      if failure is not None:
        return failure
      answer = self._dispatch(method, path, query, authorization, raw_body)
      failure = self._take_failure(method, path, after=True)
      return answer if failure is None else failure

  def _dispatch(self, method: str, path: str, query: str, authorization: str | None,
                raw_body: bytes) -> tuple[int, Any, dict]:
    try:
      self._check_auth(authorization)
      fn, match = self._route(method, path)
      params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
      result = fn(match, params, self._parse_body(raw_body))
      status, body = result if isinstance(result, tuple) else (200, result)
      return status, body, {}
    except ApiFailure as e:
      return e.status, e.body(), {}
    except Exception:  # a stand-in bug: answer like Toloka's 500 and keep it for the tests
      self.errors.append(traceback.format_exc())
      return 500, ApiFailure(500, "INTERNAL_ERROR", "stand-in handler crashed").body(), {}

  def _take_failure(self, method: str, path: str, after: bool) -> tuple[int, Any, dict] | None:
    for f in self._failures:
      if (f.times > 0 and f.after == after and f.path_contains in path
          and f.method in (None, method)):
        f.times -= 1
        code = _FAILURE_CODES.get(f.status, "INTERNAL_ERROR")
        headers = {"Retry-After": str(f.retry_after)} if f.status == 429 else {}
        body = None if f.empty_body else ApiFailure(f.status, code, "injected failure").body()
        return f.status, body, headers
    return None

  def _check_auth(self, authorization: str | None) -> None:
    if authorization not in (f"OAuth {self.token}", f"ApiKey {self.token}"):
      raise ApiFailure(401, "AUTHENTICATION_ERROR",
                       "Authentication failed: invalid or missing token")

  def _route(self, method: str, path: str) -> tuple[Callable, re.Match]:
    for route_method, pattern, fn in self._routes:
      match = pattern.fullmatch(path)
      if match and route_method == method:
        return fn, match
    raise ApiFailure(501, "NOT_IMPLEMENTED",
                     f"the Toloka stand-in does not implement {method} {path}")

  @staticmethod
  def _parse_body(raw: bytes) -> Any:
    if not raw:
      return None
    try:
      return json.loads(raw)
    except ValueError as e:
      raise ApiFailure(400, "VALIDATION_ERROR", f"request body is not valid JSON: {e}") from e

  # -- ids, clock, operations

  def _next_id(self, counter: str) -> str:
    self._counters[counter] += 1
    return str(self._counters[counter])

  def _object_id(self, pool_id: str) -> str:
    """Task / suite / assignment id in Toloka's shape: <pool hex>--<sequence hex>."""
    self._counters["object"] += 1
    return f"{int(pool_id):010x}--{self._counters['object']:024x}"

  def _now(self, advance_s: float = 0.0) -> datetime.datetime:
    """The simulated clock: never behind real time, moved on by simulated work."""
    self._clock = max(self._clock, _utcnow()) + datetime.timedelta(seconds=advance_s)
    return self._clock

  def _new_operation(self, op_type: str, parameters: dict, details: Any = None,
                     status: str = "SUCCESS", op_id: str | None = None,
                     log: list[dict] | None = None) -> tuple[int, dict]:
    now = _iso(_utcnow())
    op = {"id": op_id or str(uuid.uuid4()), "type": op_type, "status": status, "submitted": now,
          "started": now, "finished": now, "progress": 100, "parameters": parameters}
    if details is not None:
      op["details"] = details
    self.operations[op["id"]] = op
    self._op_logs[op["id"]] = log or []
    self._op_polls[op["id"]] = self.operation_polls
    return 202, self._operation_view(op["id"], first=True)

  def _operation_view(self, op_id: str, first: bool = False) -> dict:
    op = copy.deepcopy(self.operations[op_id])
    if self._op_polls[op_id] > 0:
      for key in ("finished", "details"):
        op.pop(key, None)
      op.update(status="PENDING" if first else "RUNNING", progress=0 if first else 50)
    return op

  def _get_operation(self, match, query, body):
    op_id = match["id"]
    if op_id not in self.operations:
      raise _not_found("Operation", op_id)
    if self._op_polls[op_id] > 0:
      self._op_polls[op_id] -= 1
    if self._op_polls[op_id] == 0 and op_id in self._op_effects:
      self._op_effects.pop(op_id)()  # the background work of the operation happens now
    return self._operation_view(op_id)

  def _time_passes(self) -> None:
    """Background operations finish on their own, polled or not."""
    for op_id in list(self._op_effects):
      self._op_age[op_id] -= 1
      if self._op_age[op_id] <= 0:
        self._op_polls[op_id] = 0
        self._op_effects.pop(op_id)()

  def _get_operation_log(self, match, query, body):
    op_id = match["id"]
    if op_id not in self.operations:
      raise _not_found("Operation", op_id)
    if self._op_polls[op_id] > 0:
      return []
    return copy.deepcopy(self._op_logs[op_id])

  # -- search

  def _search(self, items, query: dict, filters: dict[str, Callable[[dict, str], bool]]) -> dict:
    try:
      limit = int(query.get("limit", 50))
    except ValueError:
      raise _invalid({"limit": {"code": "VALUE_INVALID", "message": "must be an integer"}})
    if not 1 <= limit <= 100000:
      raise _invalid({"limit": {"code": "VALUE_OUT_OF_RANGE", "message": "must be 1..100000"}})
    found = [item for item in items
             if all(test(item, query[name]) for name, test in filters.items() if name in query)
             and self._compares(item, query)]
    for key in reversed(query.get("sort", "id").split(",")):
      name = key.strip().lstrip("-")
      try:
        found.sort(key=lambda item: (item.get(name) is None,
                                     _comparable(name, item[name]) if item.get(name) is not None
                                     else (0, "")),
                   reverse=key.strip().startswith("-"))
      except (ValueError, TypeError) as e:
        raise _invalid({"sort": {"code": "VALUE_NOT_ALLOWED",
                                 "message": f"cannot sort by {name!r}"}}) from e
    return {"items": copy.deepcopy(found[:limit]), "has_more": len(found) > limit}

  @staticmethod
  def _compares(item: dict, query: dict) -> bool:
    for name, value in query.items():
      match = re.fullmatch(r"(\w+?)_(lt|lte|gt|gte)", name)
      if match is None:
        continue
      field, op = match.groups()
      if item.get(field) is None:
        return False
      try:
        a, b = _comparable(field, item[field]), _comparable(field, value)
      except ValueError as e:
        raise _invalid({name: {"code": "VALUE_INVALID", "message": str(e)}}) from e
      if not {"lt": a < b, "lte": a <= b, "gt": a > b, "gte": a >= b}[op]:
        return False
    return True

  @staticmethod
  def _equals(field: str) -> Callable[[dict, str], bool]:
    return lambda item, value: str(item.get(field)) == value

  # -- requester, projects, skills

  def _get_requester(self, match, query, body):
    return {"id": self.requester_id, "balance": round(self.balance, 4),
            "public_name": {"EN": "Toloka stand-in requester"}}

  def _owner(self) -> dict:
    return {"id": self.requester_id, "myself": True}

  @staticmethod
  def _require_object(body: Any) -> dict:
    if not isinstance(body, dict):
      raise ApiFailure(400, "VALIDATION_ERROR", "request body must be a JSON object")
    return body

  def _project_errors(self, body: dict) -> dict:
    return _missing(body, ("public_name", "public_description", "task_spec",
                           "task_spec.input_spec", "task_spec.output_spec"))

  def _create_project(self, match, query, body):
    body = self._require_object(body)
    errors = self._project_errors(body)
    if errors:
      raise _invalid(errors)
    project = {k: v for k, v in body.items() if k not in ("id", "status", "created", "owner")}
    project.update(id=self._next_id("project"), status="ACTIVE", created=_iso(self._now()),
                   owner=self._owner())
    self.projects[project["id"]] = project
    return 201, copy.deepcopy(project)

  def _lookup(self, store: dict, kind: str, object_id: str) -> dict:
    if object_id not in store:
      raise _not_found(kind, object_id)
    return store[object_id]

  def _get_project(self, match, query, body):
    return copy.deepcopy(self._lookup(self.projects, "Project", match["id"]))

  def _update_project(self, match, query, body):
    project = self._lookup(self.projects, "Project", match["id"])
    body = self._require_object(body)
    errors = self._project_errors(body)
    if errors:
      raise _invalid(errors)
    kept = {k: project[k] for k in ("id", "status", "created", "owner")}
    project.clear()
    project.update({k: v for k, v in body.items() if k not in kept}, **kept)
    return copy.deepcopy(project)

  def _find_projects(self, match, query, body):
    return self._search(self.projects.values(), query, {"status": self._equals("status")})

  def _create_skill(self, match, query, body):
    body = self._require_object(body)
    errors = _missing(body, ("name",))
    if errors:
      raise _invalid(errors)
    skill = {k: v for k, v in body.items() if k not in ("id", "created", "owner")}
    skill.update(id=self._next_id("skill"), created=_iso(self._now()), owner=self._owner())
    self.skills[skill["id"]] = skill
    return 201, copy.deepcopy(skill)

  def _get_skill(self, match, query, body):
    return copy.deepcopy(self._lookup(self.skills, "Skill", match["id"]))

  def _update_skill(self, match, query, body):
    skill = self._lookup(self.skills, "Skill", match["id"])
    body = self._require_object(body)
    kept = {k: skill[k] for k in ("id", "created", "owner")}
    skill.clear()
    skill.update({k: v for k, v in body.items() if k not in kept}, **kept)
    return copy.deepcopy(skill)

  def _find_skills(self, match, query, body):
    return self._search(self.skills.values(), query, {"name": self._equals("name")})

  # -- pools and trainings (one life cycle: CLOSED -> OPEN -> CLOSED ... -> ARCHIVED)

  _POOL_REQUIRED = ("project_id", "private_name", "may_contain_adult_content", "will_expire",
                    "reward_per_assignment", "assignment_max_duration_seconds",
                    "defaults.default_overlap_for_new_task_suites")
  _TRAINING_REQUIRED = ("project_id", "private_name", "may_contain_adult_content",
                        "inherited_instructions", "training_tasks_in_task_suite_count")

  def _container_errors(self, body: dict, training: bool) -> dict:
    errors = _missing(body, self._TRAINING_REQUIRED if training else self._POOL_REQUIRED)
    project_id = body.get("project_id")
    if project_id is not None and str(project_id) not in self.projects:
      errors["project_id"] = {"code": "DOES_NOT_EXIST",
                              "message": f"Project {project_id} does not exist"}
    reward = body.get("reward_per_assignment")
    if not training and reward is not None and (not isinstance(reward, (int, float)) or reward < 0):
      errors["reward_per_assignment"] = {"code": "VALUE_LESS_THAN_MIN",
                                         "message": "must be a number >= 0"}
    mixer = body.get("mixer_config")
    if not training and mixer is not None:
      count = mixer.get("real_tasks_count") if isinstance(mixer, dict) else None
      if not isinstance(count, int) or count < 0:
        errors["mixer_config.real_tasks_count"] = {"code": "VALUE_INVALID",
                                                   "message": "must be an integer >= 0"}
    return errors

  def _create_container(self, body: Any, training: bool) -> tuple[int, dict]:
    body = self._require_object(body)
    errors = self._container_errors(body, training)
    if errors:
      raise _invalid(errors)
    item = {k: v for k, v in body.items() if k not in _CONTAINER_READONLY}
    item.update(id=self._next_id("pool"), status=CLOSED, created=_iso(self._now()),
                owner=self._owner())
    if not training:
      item["type"] = "REGULAR"
    (self.trainings if training else self.pools)[item["id"]] = item
    self._pool_tasks[item["id"]] = []
    self._pool_assignments[item["id"]] = []
    return 201, copy.deepcopy(item)

  def _update_container(self, item: dict, body: Any, training: bool) -> dict:
    body = self._require_object(body)
    errors = self._container_errors(body, training)
    if errors:
      raise _invalid(errors)
    if str(body["project_id"]) != str(item["project_id"]):
      raise _invalid({"project_id": {"code": "VALUE_NOT_ALLOWED",
                                     "message": "a pool cannot move to another project"}})
    if item["status"] != CLOSED:
      raise _conflict(f"pool {item['id']} is {item['status']}; close it before updating")
    kept = {k: item[k] for k in _CONTAINER_READONLY if k in item}
    item.clear()
    item.update({k: v for k, v in body.items() if k not in _CONTAINER_READONLY}, **kept)
    return copy.deepcopy(item)

  def _create_pool(self, match, query, body):
    return self._create_container(body, training=False)

  def _create_training(self, match, query, body):
    return self._create_container(body, training=True)

  def _get_pool(self, match, query, body):
    pool = self._lookup(self.pools, "Pool", match["id"])
    self._poll(pool["id"])
    return copy.deepcopy(pool)

  def _get_training(self, match, query, body):
    return copy.deepcopy(self._lookup(self.trainings, "Training", match["id"]))

  def _update_pool(self, match, query, body):
    return self._update_container(self._lookup(self.pools, "Pool", match["id"]), body, False)

  def _update_training(self, match, query, body):
    return self._update_container(self._lookup(self.trainings, "Training", match["id"]), body, True)

  def _patch_pool(self, match, query, body):
    pool = self._lookup(self.pools, "Pool", match["id"])
    body = self._require_object(body)
    if not isinstance(body.get("priority"), int):
      raise _invalid({"priority": dict(_REQUIRED)})
    pool["priority"] = body["priority"]
    return copy.deepcopy(pool)

  def _find_pools(self, match, query, body):
    return self._search(self.pools.values(), query, {"project_id": self._equals("project_id"),
                                                     "status": self._equals("status")})

  def _find_trainings(self, match, query, body):
    return self._search(self.trainings.values(), query, {"project_id": self._equals("project_id"),
                                                         "status": self._equals("status")})

  def _pool_action(self, match, query, body):
    return self._container_action(self._lookup(self.pools, "Pool", match["id"]), match["action"],
                                  training=False)

  def _training_action(self, match, query, body):
    return self._container_action(self._lookup(self.trainings, "Training", match["id"]),
                                  match["action"], training=True)

  def _container_action(self, item: dict, action: str, training: bool):
    prefix, key = ("TRAINING", "training_id") if training else ("POOL", "pool_id")
    params = {key: item["id"]}
    if action == "clone":
      clone = copy.deepcopy({k: v for k, v in item.items() if k not in _CONTAINER_READONLY})
      clone.update(id=self._next_id("pool"), status=CLOSED, created=_iso(self._now()),
                   owner=self._owner())
      if not training:
        clone["type"] = "REGULAR"
      (self.trainings if training else self.pools)[clone["id"]] = clone
      self._pool_tasks[clone["id"]] = []
      self._pool_assignments[clone["id"]] = []
      return self._new_operation(f"{prefix}.CLONE", params, details={key: clone["id"]})
    if action == "open":
      if item["status"] == OPEN:
        return 204, None
      if item["status"] == ARCHIVED:
        raise _conflict(f"{key[:-3]} {item['id']} is archived")
      if not training and not isinstance(item.get("mixer_config"), dict):
        raise ApiFailure(409, "MIXER_CONFIG_REQUIRED", f"pool {item['id']} has no mixer_config")
      item.update(status=OPEN, last_started=_iso(self._now()))
      item.pop("last_close_reason", None)
      if not training:
        self._close_if_complete(item)
      return self._new_operation(f"{prefix}.OPEN", params)
    if action in ("close", "close-for-update"):
      if item["status"] != OPEN:
        return 204, None
      self._close(item, "MANUAL" if action == "close" else "FOR_UPDATE")
      return self._new_operation(f"{prefix}.CLOSE", params)
    if action == "archive":
      if item["status"] == ARCHIVED:
        return 204, None
      if item["status"] == OPEN:
        raise _conflict(f"{key[:-3]} {item['id']} is open; close it before archiving")
      item["status"] = ARCHIVED
      return self._new_operation(f"{prefix}.ARCHIVE", params)
    raise ApiFailure(501, "NOT_IMPLEMENTED", f"the Toloka stand-in has no {action!r} action")

  def _close(self, pool: dict, reason: str) -> None:
    pool.update(status=CLOSED, last_close_reason=reason, last_stopped=_iso(self._now()))

  # -- tasks

  def _create_tasks(self, match, query, body):
    single = isinstance(body, dict)
    items = [body] if single else body
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
      raise ApiFailure(400, "VALIDATION_ERROR", "body must be a task object or a non-empty list")
    async_mode = _flag(query, "async_mode")
    allow_defaults = _flag(query, "allow_defaults")
    skip_invalid = _flag(query, "skip_invalid_items")
    op_id = query.get("operation_id")
    if async_mode and op_id in self.operations:
      raise ApiFailure(409, "OPERATION_ALREADY_EXISTS", f"operation {op_id} already exists")
    errors = {}
    for index, item in enumerate(items):
      item_errors = self._task_errors(item, allow_defaults)
      if item_errors:
        errors[str(index)] = item_errors
    if async_mode and self.operation_polls > 0:
      # Toloka creates an asynchronous batch in the background: nothing exists until the
      # operation finishes (here: when it has been polled operation_polls times).
      items = copy.deepcopy(items)
      status, view = self._tasks_operation(items, {}, errors, query, op_id)
      op = self.operations[view["id"]]

      def finish():
        created = self._store_tasks(items, errors, skip_invalid, query)
        _, done = self._tasks_operation(items, created, errors, query, op["id"], register=False)
        op.update(status=done["status"], details=done.get("details"))
      self._op_effects[view["id"]] = finish
      self._op_age[view["id"]] = 2 * self.operation_polls
      return status, view
    created = self._store_tasks(items, errors, skip_invalid, query)
    if async_mode:
      return self._tasks_operation(items, created, errors, query, op_id)
    if not created:
      raise _invalid(errors["0"] if single else errors)
    if single:
      return 201, copy.deepcopy(created["0"])
    out = {"items": copy.deepcopy(created)}
    if errors:
      out["validation_errors"] = errors
    return 201, out

  def _store_tasks(self, items, errors, skip_invalid, query) -> dict:
    created = {}
    if skip_invalid or not errors:
      created = {str(i): self._store_task(item) for i, item in enumerate(items)
                 if str(i) not in errors}
    if _flag(query, "open_pool"):
      for pool_id in sorted({t["pool_id"] for t in created.values()}):
        pool = self.pools.get(pool_id)
        if pool is not None and pool["status"] == CLOSED:
          self._container_action(pool, "open", training=False)
    return created

  def _tasks_operation(self, items, created, errors, query, op_id, register=True):
    log = []
    for index, item in enumerate(items):
      key = str(index)
      if key in created:
        log.append({"type": "TASK_CREATE", "success": True, "input": item,
                    "output": {"task_id": created[key]["id"]}})
      elif key in errors:
        log.append({"type": "TASK_VALIDATE", "success": False, "input": item,
                    "output": errors[key]})
    params = {name: _flag(query, name)
              for name in ("skip_invalid_items", "allow_defaults", "open_pool")}
    details = {"total_count": len(items), "valid_count": len(items) - len(errors),
               "not_valid_count": len(errors), "success_count": len(created),
               "failed_count": len(items) - len(created)}
    status = "SUCCESS" if created or not errors else "FAIL"
    if not register:
      self._op_logs[op_id] = log
      return 200, {"status": status, "details": details}
    return self._new_operation("TASK.BATCH_CREATE", params, details, status=status, op_id=op_id,
                               log=log)

  def _task_errors(self, item: dict, allow_defaults: bool) -> dict:
    errors = {}
    pool_id = item.get("pool_id")
    container = self.pools.get(str(pool_id)) or self.trainings.get(str(pool_id))
    if pool_id is None:
      errors["pool_id"] = dict(_REQUIRED)
    elif container is None:
      errors["pool_id"] = {"code": "DOES_NOT_EXIST", "message": f"Pool {pool_id} does not exist"}
    elif container["status"] == ARCHIVED:
      errors["pool_id"] = {"code": "INAPPROPRIATE_STATUS", "message": f"Pool {pool_id} is archived"}
    input_values = item.get("input_values")
    if not isinstance(input_values, dict):
      errors["input_values"] = dict(_REQUIRED)
    elif container is not None:
      spec = _dig(self.projects.get(str(container["project_id"]), {}), "task_spec.input_spec") or {}
      errors.update(_input_errors(input_values, spec))
    overlap = item.get("overlap")
    if overlap is None and not item.get("infinite_overlap") and not allow_defaults:
      errors["overlap"] = dict(_REQUIRED)
    elif overlap is not None and (not isinstance(overlap, int) or overlap < 1):
      errors["overlap"] = {"code": "VALUE_LESS_THAN_MIN", "message": "must be an integer >= 1"}
    return errors

  def _store_task(self, item: dict) -> dict:
    pool_id = str(item["pool_id"])
    container = self.pools.get(pool_id) or self.trainings[pool_id]
    task = {k: copy.deepcopy(v) for k, v in item.items()
            if not k.startswith("__") and k not in _TASK_READONLY}
    task.update(id=self._object_id(pool_id), pool_id=pool_id, created=_iso(self._now()))
    if item.get("overlap") is None and item.get("infinite_overlap"):
      task.update(overlap=None, infinite_overlap=True)
    else:
      defaults = container.get("defaults") or {}
      overlap = (item.get("overlap") or defaults.get("default_overlap_for_new_tasks")
                 or defaults.get("default_overlap_for_new_task_suites") or 1)
      task.update(overlap=overlap, infinite_overlap=False, remaining_overlap=overlap)
    self.tasks[task["id"]] = task
    self._pool_tasks[pool_id].append(task["id"])
    self._answered_by[task["id"]] = []
    self.tasks_created += 1
    return task

  def _get_task(self, match, query, body):
    return copy.deepcopy(self._lookup(self.tasks, "Task", match["id"]))

  def _find_tasks(self, match, query, body):
    pool_id = query.get("pool_id")
    ids = self._pool_tasks.get(pool_id, []) if pool_id is not None else self.tasks
    return self._search((self.tasks[t] for t in ids), query, {"overlap": self._equals("overlap")})

  # -- assignments

  def _find_assignments(self, match, query, body):
    pool_id = query.get("pool_id")
    if not any(k.startswith("id_") for k in query):  # a fresh poll, not the next page
      self._poll(pool_id)
    ids = self._pool_assignments.get(pool_id, []) if pool_id is not None else self.assignments
    statuses = lambda item, value: item["status"] in value.split(",")
    has_task = lambda item, value: any(t["id"] == value for t in item["tasks"])
    return self._search((self.assignments[a] for a in ids), query,
                        {"status": statuses, "task_id": has_task,
                         "task_suite_id": self._equals("task_suite_id"),
                         "user_id": self._equals("user_id")})

  def _get_assignment(self, match, query, body):
    return copy.deepcopy(self._lookup(self.assignments, "Assignment", match["id"]))

  def _patch_assignment(self, match, query, body):
    assignment = self._lookup(self.assignments, "Assignment", match["id"])
    body = self._require_object(body)
    status = body.get("status")
    if status not in (ACCEPTED, REJECTED):
      raise _invalid({"status": {"code": "VALUE_NOT_ALLOWED", "message": "ACCEPTED or REJECTED"}})
    if status == REJECTED and not body.get("public_comment"):
      raise _invalid({"public_comment": dict(_REQUIRED)})
    if assignment["status"] != SUBMITTED:
      raise _conflict(f"assignment {assignment['id']} is {assignment['status']}, not SUBMITTED")
    assignment.update(status=status, public_comment=body.get("public_comment"))
    assignment[status.lower()] = _iso(self._now())
    if status == REJECTED:
      self.balance += float(assignment["reward"])
    return copy.deepcopy(assignment)

  # -- analytics

  def _analytics(self, match, query, body):
    if not isinstance(body, list) or not 1 <= len(body) <= 10:
      raise ApiFailure(400, "VALIDATION_ERROR", "body must be a list of 1..10 analytics requests")
    for request in body:
      if not isinstance(request, dict) or request.get("subject") != "POOL":
        raise ApiFailure(400, "VALIDATION_ERROR", f"unsupported analytics request {request!r}")
      if request.get("name") not in _POOL_METRICS:
        raise ApiFailure(400, "VALIDATION_ERROR", f"unknown pool metric {request.get('name')!r}")
      self._lookup(self.pools, "Pool", str(request.get("subject_id")))
    for pool_id in dict.fromkeys(str(r["subject_id"]) for r in body):
      self._poll(pool_id)
    now = _iso(_utcnow())
    values = [{"request": request, "finished": now,
               "result": self._metric(str(request["subject_id"]), request["name"])}
              for request in body]
    return self._new_operation("ANALYTICS", {"value": body}, {"value": values})

  def _metric(self, pool_id: str, name: str) -> Any:
    tasks = self._real_tasks(pool_id)
    assignments = [self.assignments[a] for a in self._pool_assignments[pool_id]]
    by_status = lambda *statuses: [a for a in assignments if a["status"] in statuses]
    finite = [t for t in tasks if t.get("overlap")]
    total = sum(t["overlap"] for t in finite)
    done = sum(min(len(self._answered_by[t["id"]]), t["overlap"]) for t in finite)
    suite = max(1, int(_dig(self.pools[pool_id], "mixer_config.real_tasks_count") or 1))
    millis = [(_parse_time(a["submitted"]) - _parse_time(a["created"])).total_seconds() * 1000
              for a in assignments if a.get("submitted")]
    return {
        "real_tasks_count": len(tasks),
        "submitted_assignments_count": len(by_status(SUBMITTED, ACCEPTED, REJECTED)),
        "skipped_assignments_count": 0,
        "rejected_assignments_count": len(by_status(REJECTED)),
        "approved_assignments_count": len(by_status(ACCEPTED)),
        "completion_percentage": {"value": math.floor(100 * done / total) if total else 0},
        "avg_submit_assignment_millis": int(sum(millis) / len(millis)) if millis else 0,
        "spent_budget": round(sum(float(a["reward"]) for a in by_status(SUBMITTED, ACCEPTED)), 4),
        "unique_workers_count": len({a["user_id"] for a in assignments}),
        "unique_submitters_count": len({a["user_id"] for a in assignments}),
        "active_workers_by_filter_count": len(self.workers),
        "estimated_assignments_count": math.ceil((total - done) / suite),
    }[name]

  # -- simulated workers

  def _make_workers(self, n: int, spammer_share: float, failed_share: float) -> dict[str, str]:
    n_spam, n_failed = round(n * spammer_share), round(n * failed_share)
    if n_spam + n_failed > n:
      raise ValueError("spammer_share + failed_share must not exceed 1")
    kinds = ([WORKER_SPAMMER] * n_spam + [WORKER_FAILED] * n_failed
             + [WORKER_HONEST] * (n - n_spam - n_failed))
    random.Random(self.seed).shuffle(kinds)
    ids = [hashlib.sha256(f"standin-worker-{self.seed}-{i}".encode()).hexdigest()[:32]
           for i in range(n)]
    return dict(zip(ids, kinds))

  def _poll(self, pool_id: str | None) -> None:
    """A client looked at a pool (or, pool_id None, at all of them): auto-advance work."""
    if self.auto_advance:
      self.advance(self.auto_advance, pool_id)

  def _real_tasks(self, pool_id: str) -> list[dict]:
    """The pool's tasks that workers are served (control tasks are not)."""
    if pool_id not in self.pools:
      return []
    return [self.tasks[t] for t in self._pool_tasks[pool_id]
            if not self.tasks[t].get("known_solutions")]

  def _remaining(self, task: dict) -> float:
    if task.get("overlap") is None:
      return math.inf
    return task["overlap"] - len(self._answered_by[task["id"]])

  def _close_if_complete(self, pool: dict) -> None:
    tasks = self._real_tasks(pool["id"])
    active = any(self.assignments[a]["status"] == "ACTIVE"
                 for a in self._pool_assignments[pool["id"]])
    if (pool["status"] == OPEN and tasks and not active
        and all(self._remaining(t) <= 0 for t in tasks)):
      self._close(pool, "COMPLETED")

  def _work_one(self, pool_id: str | None, submit: bool = True) -> bool:
    """One worker takes (and, with ``submit``, submits) one task suite in the first open pool
    that has work; False if none."""
    pools = [p for p in self.pools.values()
             if p["status"] == OPEN and (pool_id is None or p["id"] == pool_id)]
    pools.sort(key=lambda p: (-(p.get("priority") or 0), _id_key(p["id"])))
    users = list(self.workers)
    for pool in pools:
      open_tasks = [t for t in self._real_tasks(pool["id"]) if self._remaining(t) > 0]
      size = max(1, int(_dig(pool, "mixer_config.real_tasks_count") or 1))
      for step in range(len(users)):
        user = users[(self._next_worker + step) % len(users)]
        suite = [t for t in open_tasks if user not in self._answered_by[t["id"]]][:size]
        if suite:
          reward = float(pool.get("reward_per_assignment") or 0.0)
          if reward > self.balance:
            self._close(pool, "NOT_ENOUGH_BALANCE")
            break
          self._next_worker = (self._next_worker + step + 1) % len(users)
          assignment = self._take(pool, user, suite)
          if submit:
            self._submit(assignment)
          return True
    return False

  def _submit_taken(self, pool_id: str | None) -> bool:
    """A worker submits one suite taken earlier (even if its pool closed since)."""
    for assignment in self.assignments.values():
      if assignment["status"] == "ACTIVE" and pool_id in (None, assignment["pool_id"]):
        self._submit(assignment)
        return True
    return False

  def _take(self, pool: dict, user: str, suite: list[dict]) -> dict:
    """An ACTIVE assignment: the worker holds the suite (no other worker gets their slot)."""
    created = self._now(advance_s=7)
    assignment = {
        "id": self._object_id(pool["id"]), "task_suite_id": self._object_id(pool["id"]),
        "pool_id": pool["id"], "user_id": user, "status": "ACTIVE",
        "reward": float(pool.get("reward_per_assignment") or 0.0),
        "tasks": [{k: copy.deepcopy(v) for k, v in t.items() if k != "remaining_overlap"}
                  for t in suite],
        "solutions": None, "mixed": True, "automerged": False, "created": _iso(created),
        "owner": self._owner(),
    }
    for task in suite:
      self._answered_by[task["id"]].append(user)
      if task.get("overlap") is not None:
        task["remaining_overlap"] = max(0, int(self._remaining(task)))
    self.assignments[assignment["id"]] = assignment
    self._pool_assignments[pool["id"]].append(assignment["id"])
    return assignment

  def _submit(self, assignment: dict) -> None:
    pool = self.pools[assignment["pool_id"]]
    user = assignment["user_id"]
    kind = self.workers[user]
    field = self._output_field(pool)
    assignment["solutions"] = [{"output_values": {field: self._answer(kind, user, task)}}
                               for task in assignment["tasks"]]
    submitted = _parse_time(assignment["created"]) + datetime.timedelta(
        seconds=_SECONDS_PER_TASK[kind] * len(assignment["tasks"]))
    self._clock = max(self._clock, submitted)
    assignment.update(status=SUBMITTED, submitted=_iso(submitted))
    if pool.get("auto_accept_solutions"):
      assignment.update(status=ACCEPTED, accepted=_iso(submitted))
    self.balance -= float(assignment["reward"])
    self._close_if_complete(pool)

  def _output_field(self, pool: dict) -> str:
    spec = _dig(self.projects.get(str(pool["project_id"]), {}), "task_spec.output_spec") or {}
    return next(iter(spec), "result")

  def _answer(self, kind: str, user: str, task: dict) -> str:
    rng = random.Random(f"{self.seed}/{task['id']}/{user}")
    input_values = task["input_values"]
    if kind == WORKER_FAILED:
      return ANSWER_ERROR
    if self.fetch_videos and not self._clips_load(input_values):
      return ANSWER_ERROR
    if kind == WORKER_SPAMMER:
      return rng.choice((ANSWER_LEFT, ANSWER_RIGHT))
    left = rng.random() < float(self.oracle(input_values))
    if rng.random() < self.noise:
      left = not left
    return ANSWER_LEFT if left else ANSWER_RIGHT

  def _clips_load(self, input_values: dict) -> bool:
    urls = [v for v in input_values.values()
            if isinstance(v, str) and v.startswith(("http://", "https://"))]
    return all([self._fetch(url) for url in urls])

  def _fetch(self, url: str) -> bool:
    """A worker's browser GETs one clip: True if it answered 2xx with a non-empty body."""
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(url) else []
    try:
      with urllib.request.build_opener(*handlers).open(url, timeout=self.fetch_timeout_s) as r:
        ok = 200 <= r.status < 300 and len(r.read()) > 0
    except (OSError, ValueError):
      ok = False
    self.video_fetches.append((url, ok))
    return ok


def _input_errors(values: dict, spec: dict) -> dict:
  """Check input values against the project's input_spec (type, required, allowed values)."""
  errors = {}
  for name, field in spec.items():
    value = values.get(name)
    key = f"input_values.{name}"
    if value is None:
      if field.get("required", True):
        errors[key] = dict(_REQUIRED)
      continue
    problem = _type_problem(field.get("type", "string"), value)
    if problem is None and field.get("allowed_values") is not None \
        and value not in field["allowed_values"]:
      problem = {"code": "VALUE_NOT_ALLOWED",
                 "message": f"must be one of {field['allowed_values']}"}
    if problem is not None:
      errors[key] = problem
  for name in values:
    if name not in spec:
      errors[f"input_values.{name}"] = {"code": "VALUE_NOT_ALLOWED",
                                        "message": "field is not in the project's input_spec"}
  return errors


def _type_problem(kind: str, value: Any) -> dict | None:
  if kind.startswith("array_"):
    if not isinstance(value, list):
      return {"code": "VALUE_WRONG_TYPE", "message": f"must be an array ({kind})"}
    return next(filter(None, (_type_problem(kind[len("array_"):], v) for v in value)), None)
  checks = {
      "string": lambda v: isinstance(v, str), "coordinates": lambda v: isinstance(v, str),
      "file": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
      "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
      "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
      "json": lambda v: True, "url": lambda v: isinstance(v, str),
  }
  if not checks.get(kind, lambda v: True)(value):
    return {"code": "VALUE_WRONG_TYPE", "message": f"must be of type {kind}"}
  if kind == "url":
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
      return {"code": "INVALID_URL_SYNTAX", "message": "must be an absolute http(s) URL"}
  return None


class _Handler(http.server.BaseHTTPRequestHandler):
  """Thin HTTP layer: parses the request, asks ``standin.handle``, writes JSON back."""

  protocol_version = "HTTP/1.1"
  standin: TolokaStandIn

  def _serve(self) -> None:
    parts = urllib.parse.urlsplit(self.path)
    length = int(self.headers.get("Content-Length") or 0)
    raw = self.rfile.read(length) if length else b""
    status, body, headers = self.standin.handle(self.command, parts.path, parts.query,
                                                self.headers.get("Authorization"), raw)
    data = b"" if body is None else json.dumps(body).encode()
    self.send_response(status)
    for name, value in headers.items():
      self.send_header(name, value)
    if status != 204:
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    if data:
      self.wfile.write(data)

  do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

  def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
    pass
