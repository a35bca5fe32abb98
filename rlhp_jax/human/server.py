"""The local labelling page: a token-guarded HTTP server over the run's label store.

The gatherer publishes the pairs of a batch; the page shows the first unjudged one, the person
answers, and the answer is appended (fsynced) to the ``LabelStore`` before the HTTP response,
so a page reload, a closed tab or a restarted server loses nothing: what is judged is read from
the store, what is pending is what the gatherer published and the store has no answer for.

Routes. Every route but the page's two static files needs ``?token=<token>`` (a random string
made per server start and only printed, never written to the run directory). Every request must
name a loopback host (or one of ``allowed_hosts``) in its ``Host`` header, so a page on another
site cannot reach the server through DNS rebinding; bodies need a valid ``Content-Length`` of at
most ``MAX_BODY`` bytes; sockets time out after ``SOCKET_TIMEOUT_S``. Errors are JSON
``{"error": <one line>, "code": <name>}`` with a 4xx status, or 507 when the disk is full (the
answer is not stored, nothing is half-written, and the same answer can be sent again later).

    GET  /                          the labelling page (page.html)
    GET  /page.css, /page.js        its style and script (code only, no run data: no token)
    GET  /api/pending               {"pending": [pairs, each with a nonce], "judged": n,
                                    "waiting": n, "instruction": text}
    POST /api/answer                {"pair_id", "answer", "nonce"} -> stored, then 200 with
                                    {"ok", "pair_id", "answer", "judged", "waiting"}
    GET  /clips/<pair_id>-<side>.mp4  a clip (byte ranges supported)
    GET  /api/run                   the run so far: iterations, env steps, labels, returns
    GET  /run/learning_curve.png    redrawn from metrics.jsonl when older than it
    GET  /run/policy.mp4            the latest policy video, when the run has one
"""

from __future__ import annotations

import dataclasses
import http.server
import importlib.resources
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import threading
import urllib.parse

from rlhp_jax import clips, jsonl, label_store
from rlhp_jax.label_store import LabelStore

log = logging.getLogger(__name__)

SOURCE = WORKER = "human"
MAX_BODY = 4096
SOCKET_TIMEOUT_S = 30.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
STATIC = {"/page.css": ("page.css", "text/css; charset=utf-8"),
          "/page.js": ("page.js", "text/javascript; charset=utf-8")}
TRUE_RETURN = {"eval/return": "eval (deterministic)", "train/episode_return": "train episodes"}
LEARNED_REWARD = {"ppo/reward_mean": "learned reward per step (mean)",
                  "reward/train_nll": "reward model train loss",
                  "reward/val_accuracy": "reward model val accuracy"}

_plot_lock = threading.Lock()  # pyplot is not thread-safe


class RequestError(Exception):
  """A rejected request: HTTP status, a short machine-readable code and a one-line message."""

  def __init__(self, status: int, code: str, message: str):
    super().__init__(message)
    self.status, self.code, self.message = status, code, message


@dataclasses.dataclass
class PendingPair:
  """A published pair waiting for a judgement; ``nonce`` must come back with the answer."""

  pair_id: str
  iteration: int
  pair: int
  left: str
  right: str
  nonce: str

  def public(self) -> dict:
    return {"pair_id": self.pair_id, "iteration": self.iteration, "pair": self.pair,
            "nonce": self.nonce, "left": f"/clips/{os.path.basename(self.left)}",
            "right": f"/clips/{os.path.basename(self.right)}"}


class LabelServer:
  """Serves pending pairs to the page and stores the answers (``source="human"``).

  Thread-safe: the gatherer publishes and waits on one thread while the HTTP server answers
  requests on others. Usable as a context manager (``start`` / ``stop``).
  """

  def __init__(self, store: LabelStore, run_dir: str, instruction: str = "",
               host: str = "127.0.0.1", port: int = 0, token: str | None = None,
               clips_dir: str | None = None, allowed_hosts=()):
    self.store = store
    self.run_dir = run_dir
    self.clips_dir = clips_dir or os.path.join(run_dir, "clips")
    self.instruction = instruction
    self.host, self.port = host, port
    self.allowed_hosts = {h.lower().strip("[]") for h in (*LOOPBACK_NAMES, *allowed_hosts)}
    self.token = token or secrets.token_urlsafe(24)
    self._pending: dict[str, PendingPair] = {}
    self._changed = threading.Condition()
    self._httpd: http.server.ThreadingHTTPServer | None = None
    self._thread: threading.Thread | None = None

  # -- lifecycle ------------------------------------------------------------------------
  def start(self) -> "LabelServer":
    """Binds and serves in a daemon thread; ``port`` 0 picks a free port. Binding beyond
    loopback is allowed, with a loud warning."""
    if not _is_loopback(self.host):
      log.warning(f"WARNING: the labelling page listens on {self.host}, beyond this machine: "
                 "anyone who can reach it and sees the link can judge clips. Use it only on a "
                 "network you trust; reach it by a name in human.allowed_hosts")
      self.allowed_hosts.add(self.host.lower().strip("[]"))
    server_class = _ServerV6 if ":" in self.host else http.server.ThreadingHTTPServer
    httpd = server_class((self.host, self.port), _Handler)
    httpd.daemon_threads = True
    httpd.app = self
    self._httpd = httpd
    self.port = httpd.server_address[1]
    self._thread = threading.Thread(target=httpd.serve_forever, name="rlhp-label-server",
                                    daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    if self._httpd is not None:
      self._httpd.shutdown()
      self._httpd.server_close()
      self._httpd = None
    with self._changed:
      self._changed.notify_all()

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

  @property
  def url(self) -> str:
    host = f"[{self.host}]" if ":" in self.host else self.host
    return f"http://{host}:{self.port}/?token={self.token}"

  # -- the batch ------------------------------------------------------------------------
  def publish(self, iteration: int, records: list[dict]) -> list[str]:
    """Makes pairs (``render.render_pairs`` records) pending unless the store already has an
    answer for them. Returns the pair ids now pending."""
    wanted = [rec["pair_id"] for rec in records]
    with self._changed:
      for rec in records:
        pid = rec["pair_id"]
        if pid in self._pending or self._answered(pid):
          continue
        self._pending[pid] = PendingPair(pid, int(iteration), int(rec["pair"]), rec["left"],
                                         rec["right"], secrets.token_urlsafe(12))
      self._changed.notify_all()
      return [pid for pid in wanted if pid in self._pending]

  def withdraw(self, pair_ids) -> None:
    """Stops offering these pairs (a batch that timed out); later answers to them get 404."""
    with self._changed:
      for pid in pair_ids:
        self._pending.pop(pid, None)
      self._changed.notify_all()

  def pending(self) -> list[PendingPair]:
    with self._changed:
      return sorted(self._pending.values(), key=lambda p: (p.iteration, p.pair))

  def answered(self, pair_ids) -> list[str]:
    """Those of ``pair_ids`` that have a human answer in the store."""
    return [pid for pid in pair_ids if self._answered(pid)]

  def wait_for_change(self, timeout: float | None) -> None:
    """Blocks until an answer arrives, the batch changes or ``timeout`` seconds pass."""
    with self._changed:
      self._changed.wait(timeout)

  def _answered(self, pid: str) -> bool:
    return bool(self.store.answers(pair_id=pid, source=SOURCE))

  # -- answers --------------------------------------------------------------------------
  def answer(self, pair_id, answer, nonce) -> dict:
    """Validates and stores one judgement; raises ``RequestError`` (4xx) if it is rejected."""
    if not isinstance(pair_id, str) or not pair_id:
      raise RequestError(400, "bad_pair_id", "pair_id must be a non-empty string")
    if answer not in label_store.ANSWERS:
      raise RequestError(400, "bad_answer", f"answer must be one of "
                         f"{', '.join(label_store.ANSWERS)}; got {answer!r}")
    if not isinstance(nonce, str) or not nonce:
      raise RequestError(400, "bad_nonce", "nonce must be the string handed out with the pair")
    with self._changed:
      if self._answered(pair_id):
        raise RequestError(409, "already_answered", f"pair {pair_id} is already judged")
      pending = self._pending.get(pair_id)
      if pending is None:
        raise RequestError(404, "unknown_pair", f"pair {pair_id} is not waiting for a "
                           "judgement (unknown, or its batch ended)")
      if not secrets.compare_digest(nonce.encode(), pending.nonce.encode()):
        raise RequestError(409, "stale_nonce", f"the nonce for pair {pair_id} does not match "
                           "the one handed out; reload the pending pairs")
      try:
        self.store.add_answer(answer_id=f"{SOURCE}-{pair_id}", pair_id=pair_id,
                              iteration=pending.iteration, pair=pending.pair, answer=answer,
                              worker=WORKER, source=SOURCE)
      except label_store.LabelStoreError as e:
        log.warning(f"labelling page: {e}")
        raise RequestError(507, "disk_full", "the answer could not be saved (the disk is full "
                           "or failing); nothing was stored: free space, then answer again") \
            from None
      del self._pending[pair_id]
      self._changed.notify_all()
    return {"ok": True, "pair_id": pair_id, "answer": answer, **self.counts()}

  def counts(self) -> dict:
    """Pairs judged in this run (all iterations) and pairs waiting now."""
    with self._changed:
      return {"judged": len(self.store.answers(source=SOURCE)), "waiting": len(self._pending)}

  def pending_state(self) -> dict:
    return {"pending": [p.public() for p in self.pending()], **self.counts(),
            "instruction": self.instruction}

  # -- run view -------------------------------------------------------------------------
  def run_state(self) -> dict:
    rows = read_metrics(self.run_dir)
    last = rows[-1] if rows else {}
    policy = os.path.join(self.run_dir, "policy.mp4")
    return {"name": os.path.basename(os.path.normpath(self.run_dir)),
            "iterations": last.get("iteration", 0), "env_steps": last.get("env_steps", 0),
            "labels": _scalar(last.get("prefs/labels")),
            "eval_return": _scalar(_last_value(rows, "eval/return")),
            "train_return": _scalar(_last_value(rows, "train/episode_return")),
            "reward_true_corr": _scalar(last.get("reward/true_corr")),
            "curve": bool(rows) or os.path.exists(os.path.join(self.run_dir,
                                                               "learning_curve.png")),
            "policy": os.path.exists(policy),
            "policy_time": os.path.getmtime(policy) if os.path.exists(policy) else None}


def read_metrics(run_dir: str) -> list[dict]:
  """Rows of ``metrics.jsonl`` (a torn last line, mid-write, is skipped)."""
  return jsonl.read(os.path.join(run_dir, "metrics.jsonl"))


def _last_value(rows: list[dict], key: str):
  for row in reversed(rows):
    if row.get(key) is not None and _scalar(row[key]) is not None:
      return row[key]
  return None


def _scalar(value):
  """Mean of a per-seed list (ignoring None), a number, or None."""
  values = value if isinstance(value, list) else [value]
  values = [x for x in values if isinstance(x, (int, float))]
  return sum(values) / len(values) if values else None


def learning_curve(run_dir: str) -> str | None:
  """``<run_dir>/learning_curve.png``, redrawn first if ``metrics.jsonl`` is newer: the true
  return when the metrics have it, else the learned reward's statistics. None: nothing yet."""
  from rlhp_jax import report
  png = os.path.join(run_dir, "learning_curve.png")
  metrics = os.path.join(run_dir, "metrics.jsonl")
  fresh = os.path.exists(png) and (not os.path.exists(metrics)
                                   or os.path.getmtime(png) >= os.path.getmtime(metrics))
  if fresh:
    return png
  rows = read_metrics(run_dir)
  if not rows:
    return png if os.path.exists(png) else None
  has_return = any(_last_value(rows, key) is not None for key in TRUE_RETURN)
  series, what = (TRUE_RETURN, "true return") if has_return else (LEARNED_REWARD,
                                                                   "learned reward")
  name = os.path.basename(os.path.normpath(run_dir))
  tmp = png + ".part.png"
  with _plot_lock:
    report.plot_learning_curve(rows, tmp, title=f"{name}: {what}", series=series,
                               second_x="prefs/labels")
    os.replace(tmp, png)
  return png


def _is_loopback(host: str) -> bool:
  try:
    return ipaddress.ip_address(host.strip("[]")).is_loopback
  except ValueError:
    return host.lower() == "localhost"


class _ServerV6(http.server.ThreadingHTTPServer):
  address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
  """Routes requests to the ``LabelServer`` at ``self.server.app``."""

  server_version = "rlhp-jax-labels"
  timeout = SOCKET_TIMEOUT_S  # a client that stops sending never holds a thread for long

  def log_message(self, format, *args):  # noqa: A002 - the base class's signature
    pass  # the terminal belongs to the training progress

  @property
  def app(self) -> LabelServer:
    return self.server.app

  def do_GET(self):
    self._dispatch({"/": self._page, "/api/pending": self._pending, "/api/run": self._run,
                    "/run/learning_curve.png": self._curve, "/run/policy.mp4": self._policy})

  def do_POST(self):
    self._dispatch({"/api/answer": self._answer})

  def _dispatch(self, routes: dict):
    url = urllib.parse.urlsplit(self.path)
    try:
      self._check_host()
      if self.command == "GET" and url.path in STATIC:
        return self._static(*STATIC[url.path])
      self._check_token(urllib.parse.parse_qs(url.query).get("token", [""])[0])
      if self.command == "GET" and url.path.startswith("/clips/"):
        return self._clip(url.path[len("/clips/"):])
      route = routes.get(url.path)
      if route is None:
        raise RequestError(404, "not_found", f"no route {self.command} {url.path}")
      route()
    except RequestError as e:
      self._json({"error": e.message, "code": e.code}, e.status)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
      pass  # the browser went away (e.g. a video seek) or stopped sending

  def _check_host(self):
    host = (self.headers.get("Host") or "").strip().lower()
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    if name.strip("[]") not in self.app.allowed_hosts:
      raise RequestError(421, "bad_host", f"this page answers to {sorted(self.app.allowed_hosts)}"
                         f", not Host {host!r}; open the link printed in the terminal (or add "
                         "the name to human.allowed_hosts)")

  def _check_token(self, token: str):
    if not token:
      raise RequestError(401, "missing_token", "add ?token=... from the link printed in the "
                         "terminal")
    if not secrets.compare_digest(token.encode(), self.app.token.encode()):
      raise RequestError(403, "bad_token", "wrong token: use the link printed in the terminal "
                         "(a restarted run prints a new one)")

  # -- routes ---------------------------------------------------------------------------
  def _page(self):
    self._static("page.html", "text/html; charset=utf-8")

  def _pending(self):
    self._json(self.app.pending_state())

  def _answer(self):
    body = self._body()
    self._json(self.app.answer(body.get("pair_id"), body.get("answer"), body.get("nonce")))

  def _run(self):
    self._json(self.app.run_state())

  def _curve(self):
    path = learning_curve(self.app.run_dir)
    if path is None:
      raise RequestError(404, "no_metrics", "the run has no metrics yet")
    self._file(path, "image/png")

  def _policy(self):
    path = os.path.join(self.app.run_dir, "policy.mp4")
    if not os.path.exists(path):
      raise RequestError(404, "no_policy_video", "the run has no policy video yet")
    self._file(path, "video/mp4")

  def _clip(self, name: str):
    path = os.path.join(self.app.clips_dir, name)
    if clips.parse_clip_name(name) is None or not os.path.exists(path):
      raise RequestError(404, "no_clip", f"no clip {name!r}")
    self._file(path, "video/mp4")

  # -- plumbing -------------------------------------------------------------------------
  def _body(self) -> dict:
    try:
      length = int(self.headers.get("Content-Length", ""))
    except ValueError:
      raise RequestError(411, "no_length", "send a Content-Length header") from None
    if length < 0:
      raise RequestError(400, "bad_length", "Content-Length must be >= 0")
    if length > MAX_BODY:
      raise RequestError(413, "too_large", f"the body must be at most {MAX_BODY} bytes")
    try:
      body = json.loads(self.rfile.read(length) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
      raise RequestError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
      raise RequestError(400, "bad_json", "the body must be a JSON object")
    return body

  def _headers(self, status: int, ctype: str, length: int, extra: dict | None = None):
    self.send_response(status)
    self.send_header("Content-Type", ctype)
    self.send_header("Content-Length", str(length))
    self.send_header("Cache-Control", "no-store")
    self.send_header("X-Content-Type-Options", "nosniff")
    self.send_header("Referrer-Policy", "no-referrer")
    for key, value in (extra or {}).items():
      self.send_header(key, value)
    self.end_headers()

  def _json(self, data: dict, status: int = 200):
    body = json.dumps(data).encode()
    self._headers(status, "application/json", len(body))
    self.wfile.write(body)

  def _static(self, name: str, ctype: str):
    body = (importlib.resources.files("rlhp_jax.human") / name).read_bytes()
    self._headers(200, ctype, len(body))
    self.wfile.write(body)

  def _file(self, path: str, ctype: str):
    """A file, whole or one byte range (browsers seek and loop videos with ranges)."""
    size = os.path.getsize(path)
    start, end, status = 0, size - 1, 200
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
    if match and size and any(match.groups()):
      first, last = match.groups()
      start, end = ((size - int(last), size - 1) if not first
                    else (int(first), min(int(last), size - 1) if last else size - 1))
      start = max(start, 0)
      if start > end:
        self._headers(416, ctype, 0, {"Content-Range": f"bytes */{size}"})
        return
      status = 206
    extra = {"Accept-Ranges": "bytes"}
    if status == 206:
      extra["Content-Range"] = f"bytes {start}-{end}/{size}"
    self._headers(status, ctype, end - start + 1, extra)
    with open(path, "rb") as f:
      f.seek(start)
      self.wfile.write(f.read(end - start + 1))

