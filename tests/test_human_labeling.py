"""Judging clips on the local web page: the server's API (tokens, nonces, errors, restarts),
the gatherer's waiting and labels, and a tiny real run judged in headless chromium."""

import dataclasses
import itertools
import json
import os
import threading
import time
import traceback
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest

from rlhp_jax import checkpoint, core, experiment, fragments, loop
from rlhp_jax.clips import pair_id
from rlhp_jax.human import gatherer as gatherer_module
from rlhp_jax.human.config import HumanConfig
from rlhp_jax.human.gatherer import HumanGatherer
from rlhp_jax.human.server import LabelServer, learning_curve
from rlhp_jax.label_store import LabelStore
from support import tiny as tiny_run

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_human.py")
CHROMIUM = "/usr/bin/chromium"


# -- helpers ---------------------------------------------------------------------------------


def make_gatherer(cfg, run_dir):
  """A page gatherer for ``cfg``'s sections, as ``cli.make_gatherer`` builds one."""
  return HumanGatherer(cfg.human, cfg.clips, run_dir, instruction=cfg.instruction_text,
                       env_dt=cfg.env.dt)


def fake_records(run_dir, iteration, indices):
  """Pair records as ``clips.render_asked`` returns them, with small stand-in clip files."""
  clips = os.path.join(run_dir, "clips")
  os.makedirs(clips, exist_ok=True)
  records = []
  for i in indices:
    pid = pair_id(iteration, i)
    rec = {"pair": i, "pair_id": pid}
    for side in ("left", "right"):
      rec[side] = os.path.join(clips, f"{pid}-{side}.mp4")
      with open(rec[side], "wb") as f:
        f.write(bytes(range(64)))
    records.append(rec)
  return records


def request(server, path, body=None, token=None, raw=None, headers=None):
  """(status, parsed JSON or raw bytes) of one request to the server."""
  token = server.token if token is None else token
  url = f"http://127.0.0.1:{server.port}{path}" + (f"?token={token}" if token else "")
  data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
  req = urllib.request.Request(url, data=data, headers=headers or {},
                               method="POST" if data is not None else "GET")
  try:
    with urllib.request.urlopen(req, timeout=10) as resp:
      status, ctype, payload = resp.status, resp.headers["Content-Type"], resp.read()
  except urllib.error.HTTPError as e:
    status, ctype, payload = e.code, e.headers["Content-Type"], e.read()
  return status, json.loads(payload) if ctype == "application/json" else payload


def answer(server, pid, value, nonce=None):
  if nonce is None:
    nonce = {p.pair_id: p.nonce for p in server.pending()}[pid]
  return request(server, "/api/answer", {"pair_id": pid, "answer": value, "nonce": nonce})


@pytest.fixture
def served(tmp_path):
  """A server with three pending pairs of iteration 0."""
  run_dir = str(tmp_path)
  server = LabelServer(LabelStore(run_dir), run_dir, "Pick the clip that hops right.").start()
  server.publish(0, fake_records(run_dir, 0, [0, 1, 2]))
  yield server
  server.stop()


def human_config(**human):
  cfg = experiment.load_experiment(EXP)
  return dataclasses.replace(cfg, human=HumanConfig(port=0, **human))


# -- the server's API --------------------------------------------------------------------------

def test_every_route_needs_the_token(served):
  assert request(served, "/api/pending", token="")[0] == 401
  status, body = request(served, "/api/pending", token="not-the-token")
  assert status == 403 and body["code"] == "bad_token"
  assert request(served, "/clips/it00000-p000-left.mp4", token="nope")[0] == 403
  assert request(served, "/api/answer", {"pair_id": "it00000-p000", "answer": "left",
                                         "nonce": "x"}, token="nope")[0] == 403
  status, page = request(served, "/")
  assert status == 200 and b"Which clip is better?" in page
  assert request(served, "/page.js", token="")[0] == 200  # code only, no run data
  status, state = request(served, "/api/pending")
  assert status == 200 and state["waiting"] == 3 and state["judged"] == 0
  assert [p["pair_id"] for p in state["pending"]] == ["it00000-p000", "it00000-p001",
                                                      "it00000-p002"]
  assert state["instruction"] == "Pick the clip that hops right."


def test_bad_answers_get_clear_4xx_errors(served):
  pid = "it00000-p000"
  nonce = served.pending()[0].nonce
  cases = [
      (dict(raw=b"{not json"), 400, "bad_json"),
      (dict(raw=b"[1, 2]"), 400, "bad_json"),
      (dict(body={"pair_id": pid, "answer": "maybe", "nonce": nonce}), 400, "bad_answer"),
      (dict(body={"answer": "left", "nonce": nonce}), 400, "bad_pair_id"),
      (dict(body={"pair_id": "it00009-p000", "answer": "left", "nonce": nonce}), 404,
       "unknown_pair"),
      (dict(body={"pair_id": pid, "answer": "left"}), 400, "bad_nonce"),
      (dict(body={"pair_id": pid, "answer": "left", "nonce": "guessed"}), 409, "stale_nonce"),
      (dict(raw=b"x" * 5000), 413, "too_large"),
  ]
  for kwargs, status, code in cases:
    got_status, body = request(served, "/api/answer", headers={"Content-Type":
                                                               "application/json"}, **kwargs)
    assert (got_status, body["code"]) == (status, code), kwargs
    assert body["error"]
  assert served.store.answers() == []
  status, body = answer(served, pid, "left", nonce)
  assert status == 200 and body == {"ok": True, "pair_id": pid, "answer": "left",
                                    "judged": 1, "waiting": 2}
  # on disk before the response: a fresh store reads it back
  (stored,) = LabelStore(served.run_dir).answers(pair_id=pid)
  assert (stored["answer"], stored["source"], stored["worker"]) == ("left", "human", "human")
  status, body = answer(served, pid, "right", nonce)  # replayed
  assert status == 409 and body["code"] == "already_answered"
  assert len(LabelStore(served.run_dir).answers()) == 1


def raw_request(server, lines: list[str], body: bytes = b"", timeout: float = 5.0) -> bytes:
  """Sends hand-made request lines (a Host or Content-Length no browser would send)."""
  import socket
  with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    chunks = []
    while True:
      try:
        chunk = sock.recv(65536)
      except socket.timeout:
        break
      if not chunk:
        break
      chunks.append(chunk)
    return b"".join(chunks)


def test_requests_for_another_host_are_refused(served):
  path = f"/api/pending?token={served.token}"
  for host in ("evil.example", "evil.example:80", "127.0.0.1.nip.io"):
    reply = raw_request(served, [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"])
    assert reply.startswith(b"HTTP/1.0 421") or reply.startswith(b"HTTP/1.1 421"), reply[:80]
    assert b'"bad_host"' in reply
  for host in (f"127.0.0.1:{served.port}", f"localhost:{served.port}", "localhost"):
    reply = raw_request(served, [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"])
    assert b" 200 " in reply.split(b"\r\n")[0], (host, reply[:80])


def test_negative_length_and_silent_clients_do_not_hang_the_server(served, monkeypatch):
  path = f"/api/answer?token={served.token}"
  reply = raw_request(served, [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{served.port}",
                               "Content-Length: -5", "Connection: close"])
  assert b" 400 " in reply.split(b"\r\n")[0] and b'"bad_length"' in reply
  from rlhp_jax.human import server as server_module
  assert server_module._Handler.timeout == server_module.SOCKET_TIMEOUT_S > 0
  monkeypatch.setattr(server_module._Handler, "timeout", 0.5)
  import socket
  start = time.monotonic()
  with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{{"
                 .encode())                        # promises 100 bytes, sends 1, then waits
    assert sock.recv(100) == b""                   # the server hangs up on its own
  assert time.monotonic() - start < 5


def test_binding_beyond_loopback_warns_loudly(tmp_path, logs):
  with LabelServer(LabelStore(str(tmp_path)), str(tmp_path), host="0.0.0.0") as server:
    reply = raw_request(server, [f"GET /api/pending?token={server.token} HTTP/1.1",
                                 "Host: 0.0.0.0", "Connection: close"])
    assert b" 200 " in reply.split(b"\r\n")[0]
  warnings = list(logs)
  assert len(warnings) == 1 and warnings[0].startswith("WARNING: the labelling page listens "
                                                       "on 0.0.0.0")
  LabelServer(LabelStore(str(tmp_path)), str(tmp_path)).start().stop()
  assert list(logs) == warnings


def test_a_restarted_server_keeps_answers_and_shows_the_next_pair(served):
  run_dir = served.run_dir
  assert answer(served, "it00000-p000", "equal")[0] == 200
  served.stop()
  with LabelServer(LabelStore(run_dir), run_dir) as again:
    again.publish(0, fake_records(run_dir, 0, [0, 1, 2]))
    status, state = request(again, "/api/pending")
    assert [p["pair_id"] for p in state["pending"]] == ["it00000-p001", "it00000-p002"]
    assert state["judged"] == 1
    status, body = request(again, "/api/answer", {"pair_id": "it00000-p000",
                                                  "answer": "left", "nonce": "old"})
    assert status == 409 and body["code"] == "already_answered"
    assert again.token != served.token


def test_clips_are_served_with_byte_ranges_and_nothing_else(served):
  status, data = request(served, "/clips/it00000-p001-right.mp4")
  assert status == 200 and data == bytes(range(64))
  status, data = request(served, "/clips/it00000-p001-right.mp4",
                         headers={"Range": "bytes=10-13"})
  assert status == 206 and data == bytes([10, 11, 12, 13])
  for path in ("/clips/../labels/labels.jsonl", "/clips/it00000-p007-left.mp4",
               "/clips/%2e%2e%2flabels%2flabels.jsonl", "/nothing"):
    assert request(served, path)[0] == 404, path


def test_run_view_redraws_the_curve_when_metrics_are_newer(served):
  run_dir = served.run_dir
  assert request(served, "/run/learning_curve.png")[0] == 404
  assert request(served, "/run/policy.mp4")[0] == 404
  with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
    for it in range(1, 4):
      f.write(json.dumps({"iteration": it, "env_steps": 128 * it, "eval/return": [10.0 * it],
                          "prefs/labels": [2 * it]}) + "\n")
  status, png = request(served, "/run/learning_curve.png")
  assert status == 200 and png.startswith(b"\x89PNG")
  status, run = request(served, "/api/run")
  assert run["iterations"] == 3 and run["eval_return"] == 30.0 and run["labels"] == 6
  assert run["curve"] and not run["policy"]
  # no true return in the metrics: the learned reward's statistics are drawn instead
  path = os.path.join(run_dir, "metrics.jsonl")
  with open(path, "w") as f:
    f.write(json.dumps({"iteration": 1, "env_steps": 128, "ppo/reward_mean": [0.1],
                        "reward/train_nll": [0.6]}) + "\n")
  os.utime(path, (time.time() + 5, time.time() + 5))
  before = os.path.getmtime(os.path.join(run_dir, "learning_curve.png"))
  assert learning_curve(run_dir) and os.path.getmtime(learning_curve(run_dir)) > before


# -- the gatherer ------------------------------------------------------------------------------

def fake_query(n_pairs=4, asked=3) -> core.Query:
  """A query as the external driver hands it over (numpy leaves), standing still."""
  z = lambda *shape: np.zeros((n_pairs, 2, 8, *shape), np.float32)  # noqa: E731
  pairs = fragments.FragmentPairs(obs=z(11), action=z(3), true_reward=z(), qpos=z(6),
                                  qvel=z(6), counted=z() + 1)
  return core.Query(pairs=pairs, mask=np.arange(n_pairs) < asked,
                    disagreement=np.zeros(n_pairs), teacher_key=np.zeros(2, np.uint32),
                    learn_key=np.zeros(2, np.uint32))


def test_gatherer_reads_stored_answers_without_asking_again(tmp_path, monkeypatch):
  run_dir = str(tmp_path)
  store = LabelStore(run_dir)
  for i, value in enumerate(["left", "right", "cant_tell"]):
    store.add_answer(answer_id=f"human-{pair_id(4, i)}", pair_id=pair_id(4, i), iteration=4,
                     pair=i, answer=value, worker="human", source="human")
  monkeypatch.setattr(gatherer_module.clips, "render_asked",
                      lambda *a, **k: pytest.fail("rendered"))
  g = make_gatherer(human_config(), run_dir)
  label, valid = g.label(fake_query(), 4)
  assert g.server is None  # nothing to ask: no page started
  np.testing.assert_array_equal(valid, [True, True, False, False])
  np.testing.assert_array_equal(label[:2], [1.0, 0.0])


def test_judgements_never_attach_to_recomputed_other_pairs(tmp_path, monkeypatch):
  from rlhp_jax.label_store import PairMismatchError
  run_dir = str(tmp_path)
  store = LabelStore(run_dir)
  for i, value in enumerate(["left", "right", "cant_tell"]):
    store.add_answer(answer_id=f"human-{pair_id(4, i)}", pair_id=pair_id(4, i), iteration=4,
                     pair=i, answer=value, worker="human", source="human")
  monkeypatch.setattr(gatherer_module.clips, "render_asked",
                      lambda *a, **k: pytest.fail("rendered"))
  g = make_gatherer(human_config(), run_dir)
  query = fake_query()
  assert g.label(query, 4)[1].sum() == 2                 # records the pairs' fingerprints
  other = query.replace(pairs=query.pairs.replace(qpos=query.pairs.qpos + 0.1))
  with pytest.raises(PairMismatchError, match="iteration 4: pair it00004-p000 is not the pair"):
    make_gatherer(human_config(), run_dir).label(other, 4)
  store.add_event("iteration_dropped", iteration=4)        # rlhp-jax labels drop-iteration
  label, valid = make_gatherer(human_config(), run_dir).label(other, 4)
  assert not valid.any()


def test_gatherer_goes_on_after_the_batch_timeout(tmp_path, monkeypatch, logs):
  run_dir = str(tmp_path)
  rendered = []

  def render(query, iteration, out_dir, clips_cfg, dt, indices=None):
    indices = [int(i) for i in indices]
    rendered.append(indices)
    return fake_records(run_dir, iteration, indices)

  monkeypatch.setattr(gatherer_module.clips, "render_asked", render)
  store = LabelStore(run_dir)
  store.add_answer(answer_id="human-it00002-p000", pair_id=pair_id(2, 0), iteration=2, pair=0,
                   answer="equal", worker="human", source="human")
  g = make_gatherer(human_config(batch_timeout_s=1.5), run_dir)

  def judge_one():
    assert wait_for(lambda: g.server is not None and g.server.pending(), 30)
    assert answer(g.server, pair_id(2, 2), "left")[0] == 200

  helper = threading.Thread(target=judge_one)
  helper.start()
  label, valid = g.label(fake_query(), 2)
  helper.join()
  assert rendered == [[1, 2]]  # only the masked pairs without an answer
  np.testing.assert_array_equal(valid, [True, False, True, False])
  np.testing.assert_array_equal(label[[0, 2]], [0.5, 1.0])
  assert any(line.startswith("judge clips at http://127.0.0.1:") for line in logs)
  assert any("timed out" in line for line in logs)
  status, body = answer(g.server, pair_id(2, 1), "left", nonce="late")
  assert status == 404 and body["code"] == "unknown_pair"  # withdrawn with its batch
  token = g.server.token
  g.close()
  assert g.server is None and not token_in_files(run_dir, token)


def token_in_files(run_dir, token):
  """Whether ``token`` appears in any file of the run directory."""
  for folder, _, files in os.walk(run_dir):
    for name in files:
      with open(os.path.join(folder, name), "rb") as f:
        if token.encode() in f.read():
          return True
  return False


def wait_for(predicate, timeout, poll=0.05):
  deadline = time.monotonic() + timeout
  while not predicate():
    if time.monotonic() > deadline:
      return False
    time.sleep(poll)
  return True


# -- a real run judged in the browser ----------------------------------------------------------

def tiny(cfg):
  """The shared tiny run (tests/support/tiny.py) with longer fragments, 8 labels, one iteration
  per call and one clip-rendering worker: 3 iterations of 128 env steps."""
  return tiny_run.config(cfg, 384, False, "--prefs.fragment-length", "16",
                         "--prefs.total-labels", "8", "--prefs.initial-fraction", "0.5",
                         "--prefs.oversample", "2", "--run.iterations-per-call", "1",
                         "--clips.workers", "1")


def final_state(cfg, run_dir):
  """The run's last checkpoint, read back as a benchmark would (config.json + checkpoints);
  the external driver keeps a stack of one run."""
  restored = checkpoint.restore_run(run_dir)
  assert restored.config == cfg and restored.step == cfg.num_iterations
  return jax.tree.map(lambda x: x[0], restored.state)


class Page:
  """The labelling page in headless chromium, with waits on its state."""

  def __init__(self, page):
    self.page = page

  def judged(self) -> int:
    return int(self.page.get_attribute("#counter", "data-judged") or 0)

  def pending(self) -> int:
    return int(self.page.get_attribute("#counter", "data-pending") or 0)

  def pair(self) -> str:
    return self.page.get_attribute("body", "data-pair")

  def wait_judging(self, timeout_ms=60_000):
    self.page.wait_for_function("document.body.dataset.state === 'judging'", timeout=timeout_ms)

  def judge(self, act):
    """Judges the pair on screen with ``act()`` (a click or a key) and waits for the next."""
    self.wait_judging()
    before = self.judged()
    act()
    self.page.wait_for_function(
        f"+document.getElementById('counter').dataset.judged > {before} && "
        "document.body.dataset.state !== 'sending'")
    return before + 1


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
def test_judging_in_the_browser_trains_the_reward_model(tmp_path, logs):
  from playwright.sync_api import TimeoutError as PlaywrightTimeout
  from playwright.sync_api import sync_playwright
  run_dir = str(tmp_path / "run")
  os.makedirs(run_dir)
  cfg = tiny(human_config())
  experiment.save(cfg, os.path.join(run_dir, "config.json"))  # as the CLI does
  outcome = {}
  g = make_gatherer(cfg, run_dir)

  def run():
    try:
      outcome["summary"] = loop.train_external(cfg, run_dir, g)
    except BaseException:  # noqa: BLE001 - reported by the test thread
      outcome["error"] = traceback.format_exc()

  trainer = threading.Thread(target=run, daemon=True)
  trainer.start()
  assert wait_for(lambda: g.url or not trainer.is_alive(), 600), "no page within 10 minutes"
  assert "error" not in outcome, outcome.get("error")
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
    page = Page(browser.new_page(viewport={"width": 1100, "height": 800}))
    page.page.goto(g.url)
    page.wait_judging()
    assert page.pending() == 4 and page.pair() == pair_id(0, 0)
    assert "RIGHT" in page.page.inner_text("#instruction")
    page.page.wait_for_function("['left', 'right'].every(id => "
                                "document.getElementById(id).videoWidth === 64)")
    # q / w pause and play each clip
    assert not page.page.evaluate("document.getElementById('left').paused")
    page.page.keyboard.press("q")
    assert page.page.evaluate("document.getElementById('left').paused")
    page.page.keyboard.press("w")
    assert page.page.evaluate("document.getElementById('right').paused")
    page.page.keyboard.press("q")
    assert not page.page.evaluate("document.getElementById('left').paused")
    # two by click, a reload, two by hotkey
    assert page.judge(lambda: page.page.click("button[data-answer=left]")) == 1
    assert page.pending() == 3 and page.pair() == pair_id(0, 1)
    assert page.judge(lambda: page.page.click("text=Right is better")) == 2
    assert page.page.inner_text("#counter").split() == ["judged", "2", "pending", "2"]
    page.page.reload()
    page.wait_judging()
    assert page.pair() == pair_id(0, 2) and page.judged() == 2
    page.judge(lambda: page.page.keyboard.press("3"))
    page.judge(lambda: page.page.keyboard.press("1"))
    # the later batches by hotkeys until the run ends (0 and 4: can't tell)
    keys = itertools.cycle(["2", "0", "1", "3", "4"])
    while trainer.is_alive():
      try:
        page.judge(lambda: page.page.keyboard.press(next(keys)))
      except PlaywrightTimeout:
        continue
    browser.close()
  trainer.join()
  assert "error" not in outcome, outcome.get("error")
  answers = LabelStore(run_dir).answers(source="human")
  judged = [a for a in answers if a["answer"] != "cant_tell"]
  assert len(answers) == 8 and [a["answer"] for a in answers[:4]] == ["left", "right", "equal",
                                                                      "left"]
  assert 0 < len(judged) < len(answers)
  rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
  rows = [r for r in rows if "prefs/labels" in r]      # iteration rows (not the final eval's)
  assert rows[-1]["prefs/labels"] == [len(judged)]
  assert rows[-1]["prefs/requested"] == [len(answers)]
  assert all(np.isfinite(r["reward/train_nll"][0]) for r in rows)
  state = final_state(cfg, run_dir)
  assert int(state.buffer.count) == len(judged)
  want = {"left": 1.0, "right": 0.0, "equal": 0.5}
  np.testing.assert_array_equal(np.asarray(state.buffer.label)[:len(judged)],
                                [want[a["answer"]] for a in judged])
  assert g.server is None  # closed by the driver
  (link,) = [line for line in logs if line.startswith("judge clips at")]
  assert not token_in_files(run_dir, link.split("token=")[-1])
