"""The fault matrix, host side: full disks, torn writes, damaged files, two processes on one run,
flaky remote services. (Faults of the Toloka path itself: tests/test_toloka.py; kills at every
crash point: tests/test_kill_matrix.py.)"""

import errno
import json
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest

from rlhp_jax import checkpoint, cli, experiment, jsonl, label_store, report, run_lock
from rlhp_jax.crowd import retry
from rlhp_jax.crowd.config import StorageConfig
from rlhp_jax.crowd.retry import CrowdError
from rlhp_jax.crowd.storage import make_storage
from rlhp_jax.human.server import LabelServer

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_ppo_true_reward.py")


def logged(caplog) -> list[str]:
  """Warnings the package logged so far in the test."""
  return [r.getMessage() for r in caplog.records
          if r.name.startswith("rlhp_jax") and r.levelno >= logging.WARNING]


def answer(pid, worker, ans="left"):
  return dict(answer_id=f"{pid}/{worker}", pair_id=pid, iteration=0,
              pair=int(pid.rsplit("-p", 1)[1]), answer=ans, worker=worker, source="toloka")


def disk_full_after(nbytes):
  """A ``label_store._write_line`` that writes ``nbytes`` of the line, then fails as a full
  disk does."""
  def write(fd, data):
    os.write(fd, data[:nbytes])
    raise OSError(errno.ENOSPC, "No space left on device")
  return write


# -- the label store ----------------------------------------------------------------------------

def test_store_full_disk_rolls_back_and_loses_nothing(tmp_path, monkeypatch):
  store = label_store.LabelStore(str(tmp_path))
  store.add_answer(**answer("it00000-p000", "w1"))
  store.add_event("pool_cloned", iteration=0, round=0, pool_id="7")
  before = open(store.path, "rb").read()
  monkeypatch.setattr(label_store, "_write_line", disk_full_after(17))
  with pytest.raises(label_store.LabelStoreError, match="could not append.*No space left.*"
                                                        "Free disk space"):
    store.add_answer(**answer("it00000-p001", "w2"))
  assert open(store.path, "rb").read() == before          # the partial line was rolled back
  assert not store.has_answer("it00000-p001/w2")
  monkeypatch.undo()                                      # space freed
  assert store.add_answer(**answer("it00000-p001", "w2"))
  again = label_store.LabelStore(str(tmp_path))
  assert [a["pair_id"] for a in again.answers()] == ["it00000-p000", "it00000-p001"]
  assert again.last_event("pool_cloned")["pool_id"] == "7" and not again.skipped_lines


def test_store_cuts_a_torn_tail_without_rewriting(tmp_path, caplog):
  store = label_store.LabelStore(str(tmp_path))
  for i in range(30):
    store.add_answer(**answer(f"it00000-p{i:03d}", "w"))
  store.add_event("pool_cloned", iteration=0, round=0, pool_id="9")
  whole = open(store.path, "rb").read()
  with open(store.path, "ab") as f:
    f.write(b'{"type": "answer", "answer_id": "to')       # a crash mid-append
  inode = os.stat(store.path).st_ino
  again = label_store.LabelStore(str(tmp_path))
  warnings = logged(caplog)
  assert os.stat(store.path).st_ino == inode               # truncated in place, not replaced
  assert open(store.path, "rb").read() == whole
  assert len(again.answers()) == 30 and again.last_event("pool_cloned")["pool_id"] == "9"
  assert len(warnings) == 1 and "torn last line" in warnings[0]
  again.add_answer(**answer("it00000-p099", "w"))          # the next record on its own line
  assert len(label_store.LabelStore(str(tmp_path)).answers()) == 31


def test_store_skips_and_reports_a_bad_middle_line(tmp_path, caplog):
  store = label_store.LabelStore(str(tmp_path))
  store.add_answer(**answer("it00000-p000", "a"))
  with open(store.path, "ab") as f:
    f.write(b"\x00\x00garbage from a bad disk\n")
  store.add_answer(**answer("it00000-p001", "b"))
  size = os.path.getsize(store.path)
  again = label_store.LabelStore(str(tmp_path))
  warnings = logged(caplog)
  assert [a["pair_id"] for a in again.answers()] == ["it00000-p000", "it00000-p001"]
  assert again.skipped_lines == [2] and "line 2" in warnings[0]
  assert os.path.getsize(store.path) == size                # reported, never rewritten


# -- the labelling page on a full disk ---------------------------------------------------------

def test_page_answers_507_on_a_full_disk_and_keeps_the_pair(tmp_path, monkeypatch, caplog):
  from test_human_labeling import answer as post_answer
  from test_human_labeling import fake_records
  run_dir = str(tmp_path)
  store = label_store.LabelStore(run_dir)
  with LabelServer(store, run_dir) as server:
    server.publish(0, fake_records(run_dir, 0, [0, 1]))
    store.add_event("human_batch_opened", iteration=0, pairs=["it00000-p000", "it00000-p001"])
    size = os.path.getsize(store.path)
    monkeypatch.setattr(label_store, "_write_line", disk_full_after(10))
    status, body = post_answer(server, "it00000-p000", "left")
    assert status == 507 and body["code"] == "disk_full" and "free space" in body["error"]
    assert os.path.getsize(store.path) == size              # nothing half-written
    warned = logged(caplog)
    assert warned and "No space left" in warned[0]
    monkeypatch.undo()
    status, body = post_answer(server, "it00000-p000", "left")   # the same pair, answered again
    assert status == 200 and body["judged"] == 1
    assert post_answer(server, "it00000-p001", "right")[0] == 200
  reloaded = label_store.LabelStore(run_dir)
  assert [(a["pair_id"], a["answer"]) for a in reloaded.answers()] == [
      ("it00000-p000", "left"), ("it00000-p001", "right")]


# -- metrics, config, checkpoints --------------------------------------------------------------

def test_metrics_log_tolerates_a_torn_last_line(tmp_path):
  log = report.MetricsLog(str(tmp_path))
  log.write({"iteration": 1, "x": 1.0})
  log.write({"iteration": 2, "x": 2.0})
  with open(log.path, "a") as f:
    f.write('{"iteration": 3, "x"')                          # killed mid-write
  assert [r["iteration"] for r in report.read_rows(log.path)] == [1, 2]
  resumed = report.MetricsLog(str(tmp_path))
  assert [r["iteration"] for r in resumed.rows] == [1, 2]
  resumed.write({"iteration": 3, "x": 3.0})
  assert [json.loads(line)["iteration"] for line in open(log.path)] == [1, 2, 3]


def test_one_jsonl_reader_skips_a_torn_tail_and_reports_bad_lines(tmp_path):
  path = tmp_path / "x.jsonl"
  path.write_bytes(b'{"a": 1}\n\n[1, 2]\n\xff\xfe\n{"a": 2, "b": "x"}\n{"a": 3, "b"')
  bad = []
  rows = jsonl.read(str(path), on_bad=lambda n, line: bad.append((n, line)))
  assert rows == [{"a": 1}, {"a": 2, "b": "x"}]                # the torn tail left out
  assert bad == [(3, b"[1, 2]"), (4, b"\xff\xfe")]             # blank line 2 is quiet
  assert jsonl.read(str(path), accept=lambda r: "b" in r) == [{"a": 2, "b": "x"}]
  assert jsonl.read(str(tmp_path / "none.jsonl")) == []
  assert path.read_bytes().endswith(b'"b"')                     # reading changes nothing


def test_config_json_is_written_atomically(tmp_path, monkeypatch):
  cfg = experiment.load_experiment(EXP)
  path = str(tmp_path / "config.json")
  experiment.save(cfg, path)
  before = open(path).read()

  def crash(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(experiment.json, "dump", crash)
  with pytest.raises(OSError):
    experiment.save(cfg, path)
  assert open(path).read() == before                         # the old file, whole
  monkeypatch.undo()
  assert experiment.load_experiment(path) == cfg


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  import jax.numpy as jnp
  like = {"a": jnp.zeros(5), "b": jnp.zeros((2, 3))}
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, {"a": jnp.arange(5.0), "b": jnp.ones((2, 3))})
  ckpt.save(2, {"a": jnp.arange(5.0) + 1, "b": jnp.ones((2, 3)) * 2})
  checkpoint._tear(str(tmp_path / "checkpoints" / "2"))
  resumed = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  step, state = resumed.restore(like)
  warnings = logged(caplog)
  assert step == 1 and float(state["a"][1]) == 1.0
  assert len(warnings) == 1 and "checkpoint 2 is unreadable" in warnings[0]
  assert "falling back to checkpoint 1" in warnings[0]
  resumed.save(2, {"a": jnp.arange(5.0) + 1, "b": jnp.ones((2, 3)) * 2})  # the step is free
  assert checkpoint.Checkpointer(str(tmp_path / "checkpoints")).restore(like)[0] == 2


# -- one process per run directory -------------------------------------------------------------

HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from rlhp_jax import run_lock
run_lock.lock({run_dir!r}, "rlhp-jax train --resume")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_trainer_on_the_same_run_exits_with_the_lock_message(tmp_path, capsys):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  experiment.save(experiment.load_experiment(EXP), str(run_dir / "config.json"))
  holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=ROOT, run_dir=str(run_dir))],
                            stdout=subprocess.PIPE)
  try:
    assert holder.stdout.readline().strip() == b"locked"
    code = cli.main(["train", "--resume", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and len(err) == 1
    assert f"in use by process {holder.pid}" in err[0] and "then resume" in err[0]
    assert sorted(os.listdir(run_dir)) == [".lock", "config.json"]   # nothing written
  finally:
    holder.kill()
    holder.wait()
  run_lock.lock(str(run_dir))            # a dead holder (even SIGKILLed) leaves no stale lock
  run_lock.unlock(str(run_dir))


# -- retries -------------------------------------------------------------------------------------

class Status(Exception):
  def __init__(self, status, retry_after=None):
    super().__init__(f"status {status}")
    self.status_code = status
    headers = {} if retry_after is None else {"retry-after": retry_after}
    self.response = httpx.Response(status, headers=headers)


@pytest.mark.parametrize("value,expected", [("86400", 30.0), ("-5", None), ("soon", None),
                                            ("2.5", 2.5)])
def test_retry_after_is_capped_and_bad_values_ignored(value, expected):
  sleeps, calls = [], []

  def flaky():
    calls.append(1)
    if len(calls) == 1:
      raise Status(429, value)
    return "ok"
  assert retry.retry_call(flaky, "t", sleep=sleeps.append, max_delay=30.0) == "ok"
  if expected is None:
    assert 0 <= sleeps[0] <= 0.5                             # the backoff instead
  else:
    assert sleeps == [expected]


def test_an_outage_within_the_budget_is_ridden_out():
  sleeps, calls = [], []

  def down_for_a_while():
    calls.append(1)
    if sum(sleeps) < 400:                                    # ~7 minutes of 503s
      raise Status(503)
    return "ok"
  assert retry.retry_call(down_for_a_while, "t", sleep=sleeps.append, budget_s=600) == "ok"
  assert max(sleeps) <= 30.0 and len(calls) > 10


class FlakyS3:
  """Wraps a boto3 client: ``put_object`` fails transiently ``failures`` times."""

  def __init__(self, inner, failures):
    self.inner, self.failures, self.puts = inner, failures, 0

  def put_object(self, **kwargs):
    from botocore.exceptions import EndpointConnectionError
    self.puts += 1
    if self.failures:
      self.failures -= 1
      raise EndpointConnectionError(endpoint_url="http://s3.invalid")
    return self.inner.put_object(**kwargs)

  def __getattr__(self, name):
    return getattr(self.inner, name)


def test_s3_uploads_are_retried_and_skipped_when_present(tmp_path, s3_server, monkeypatch):
  monkeypatch.setattr(time, "sleep", lambda s: None)
  endpoint, bucket = s3_server
  clip = tmp_path / "it00000-p000-left.mp4"
  clip.write_bytes(b"\x00\x00\x00 ftypisom clip")
  storage = make_storage(StorageConfig(kind="s3", bucket=bucket, endpoint_url=endpoint,
                                       prefix="faults"), str(tmp_path), "run-f")
  flaky = FlakyS3(storage.client, failures=2)
  storage.client = flaky
  key = storage.put(str(clip))
  assert flaky.puts == 3 and storage.exists(key)
  storage.put(str(clip))                                     # a resumed batch
  assert flaky.puts == 3                                     # ... uploads nothing again
  missing = make_storage(StorageConfig(kind="s3", bucket="no-such-bucket", endpoint_url=endpoint),
                         str(tmp_path), "run-f")
  with pytest.raises(CrowdError, match="bucket does not exist; create it or fix storage.bucket"):
    missing.put(str(clip))
