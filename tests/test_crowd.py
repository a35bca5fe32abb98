"""Crowd plumbing without JAX: the label store, clip storage on a real (moto) S3 server,
retries, and crowd-kit aggregation into preference probabilities."""

import json
import os
import urllib.request

import httpx
import pytest

from rlhp_jax import clips, label_store
from rlhp_jax.clips import pair_of_url
from rlhp_jax.crowd import aggregate, retry
from rlhp_jax.crowd.config import StorageConfig, TolokaConfig
from rlhp_jax.crowd.storage import LocalStorage, S3Storage, make_storage
from rlhp_jax.config_errors import ConfigError


def answer(pid, worker, ans, n=0):
  return dict(answer_id=f"{pid}/{worker}/{n}", pair_id=pid, iteration=0,
              pair=int(pid.rsplit("-p", 1)[1]), answer=ans, worker=worker, source="toloka")


# -- label store ----------------------------------------------------------------------------

def test_label_store_is_durable_and_deduplicates(tmp_path):
  store = label_store.LabelStore(str(tmp_path))
  assert store.add_answer(**answer("it00000-p000", "w1", "left"))
  assert not store.add_answer(**answer("it00000-p000", "w1", "left"))   # same answer id
  store.add_event("pool_cloned", iteration=0, round=0, pool_id="42")
  again = label_store.LabelStore(str(tmp_path))                          # a restart
  assert [a["answer"] for a in again.answers(iteration=0)] == ["left"]
  assert again.last_event("pool_cloned", iteration=0, round=0)["pool_id"] == "42"
  assert not again.add_answer(**answer("it00000-p000", "w1", "left"))


def test_label_store_survives_a_torn_last_line(tmp_path):
  store = label_store.LabelStore(str(tmp_path))
  store.add_answer(**answer("it00000-p001", "w1", "right"))
  with open(store.path, "a") as f:
    f.write('{"type": "answer", "answer_id": "half')                     # crash mid-write
  again = label_store.LabelStore(str(tmp_path))
  assert len(again.answers()) == 1
  again.add_answer(**answer("it00000-p001", "w2", "left"))
  assert len(label_store.LabelStore(str(tmp_path)).answers()) == 2


def test_label_store_rejects_unknown_answers(tmp_path):
  with pytest.raises(ValueError, match="answer must be one of"):
    label_store.LabelStore(str(tmp_path)).add_answer(**answer("it00000-p000", "w", "maybe"))


def test_pair_ids_round_trip_through_clip_urls():
  pid = clips.pair_id(12, 3)
  assert pid == "it00012-p003"
  assert pair_of_url(f"http://h:1/b/run/{pid}-left.mp4?X-Amz-Signature=abc") == pid
  assert pair_of_url(f"file:///tmp/clips/{pid}-right.mp4") == pid
  assert pair_of_url("http://h/other.mp4") is None


# -- storage --------------------------------------------------------------------------------

def test_local_storage(tmp_path):
  clip = tmp_path / "it00000-p000-left.mp4"
  clip.write_bytes(b"mp4")
  storage = LocalStorage(str(tmp_path / "store"))
  key = storage.put(str(clip))
  assert storage.exists(key) and storage.url(key).startswith("file://")
  assert LocalStorage(str(tmp_path / "store"), "http://127.0.0.1:1/clips").url(key) == \
      "http://127.0.0.1:1/clips/it00000-p000-left.mp4"


def test_s3_storage_uploads_and_presigns(tmp_path, s3_server):
  endpoint, bucket = s3_server
  clip = tmp_path / "it00001-p002-left.mp4"
  clip.write_bytes(b"\x00\x00\x00 ftypisom fake clip")
  cfg = StorageConfig(kind="s3", bucket=bucket, prefix="exp", endpoint_url=endpoint)
  storage = make_storage(cfg, str(tmp_path), "run-1")
  key = storage.put(str(clip))
  assert key == "exp/run-1/it00001-p002-left.mp4" and storage.exists(key)
  assert not storage.exists("exp/run-1/missing.mp4")
  url = storage.url(key)
  assert pair_of_url(url) == "it00001-p002"
  assert urllib.request.urlopen(url).read() == clip.read_bytes()    # what a worker fetches
  public = S3Storage(StorageConfig(kind="s3", bucket=bucket, endpoint_url=endpoint,
                                   public_base_url="https://cdn.example/"), "run-1")
  assert public.url("a/b.mp4") == "https://cdn.example/a/b.mp4"


def test_storage_config_errors_name_the_field(monkeypatch):
  with pytest.raises(ConfigError, match="storage.bucket"):
    S3Storage(StorageConfig(kind="s3"), "run")
  with pytest.raises(ConfigError, match="storage.presign_expiry_s"):
    StorageConfig(presign_expiry_s=10**7)
  with pytest.raises(ConfigError, match="storage.kind"):
    StorageConfig(kind="gcs")
  for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
    monkeypatch.delenv(key, raising=False)
  monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
  monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
  monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
  with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
    S3Storage(StorageConfig(kind="s3", bucket="rlhp-clips"), "run")


def test_toloka_config_errors_name_the_field():
  with pytest.raises(ConfigError, match="toloka.base_pool_id"):
    TolokaConfig().check_ready()
  with pytest.raises(ConfigError, match="toloka.overlap"):
    TolokaConfig(overlap=0)
  with pytest.raises(ConfigError, match="toloka.aggregator"):
    TolokaConfig(aggregator="mean")


# -- retries --------------------------------------------------------------------------------

class FakeApiError(Exception):
  def __init__(self, status):
    super().__init__(f"status {status}")
    self.status_code = status
    self.response = httpx.Response(status, headers={"retry-after": "0.25"} if status == 429
                                   else {})


def test_transient_errors_are_retried_with_backoff():
  calls, sleeps = [], []

  def flaky():
    calls.append(1)
    if len(calls) == 1:
      raise httpx.ConnectError("refused")
    if len(calls) == 2:
      raise FakeApiError(429)
    if len(calls) == 3:
      raise FakeApiError(503)
    return "ok"

  assert retry.retry_call(flaky, "test", sleep=sleeps.append) == "ok"
  assert len(calls) == 4 and len(sleeps) == 3
  assert sleeps[1] == 0.25                      # 429's Retry-After is honoured


def test_permanent_errors_are_not_retried_and_retries_end():
  calls = []

  def forbidden():
    calls.append(1)
    raise FakeApiError(401)

  with pytest.raises(FakeApiError):
    retry.retry_call(forbidden, "test", sleep=lambda s: None)
  assert len(calls) == 1
  sleeps = []
  with pytest.raises(retry.RetriesExhausted, match="still failing after .* over 20s"):
    retry.retry_call(lambda: (_ for _ in ()).throw(FakeApiError(500)), "test", budget_s=20,
                     max_delay=4, sleep=sleeps.append)
  assert sum(sleeps) == pytest.approx(20) and max(sleeps) <= 4    # the budget, in time


# -- aggregation ----------------------------------------------------------------------------

def test_majority_vote_probability_is_the_share_of_left():
  answers = [answer("it00000-p000", "a", "left"), answer("it00000-p000", "b", "left"),
             answer("it00000-p000", "c", "right"),
             answer("it00000-p001", "a", "left"), answer("it00000-p001", "b", "right"),
             answer("it00000-p002", "a", "right"), answer("it00000-p002", "b", "failed"),
             answer("it00000-p003", "a", "failed"), answer("it00000-p003", "b", "failed")]
  probs = aggregate.preference_probabilities(answers)
  assert probs == pytest.approx({"it00000-p000": 2 / 3, "it00000-p001": 0.5,
                                 "it00000-p002": 0.0})
  assert "it00000-p003" not in probs                                   # only failed: no label
  assert aggregate.only_failed(answers) == {"it00000-p003"}
  hard = aggregate.preference_probabilities(answers, soft=False)
  assert hard == {"it00000-p000": 1.0, "it00000-p001": 0.5, "it00000-p002": 0.0}


def test_direct_majority_vote_equals_crowdkits():
  import random

  import pandas as pd
  from crowdkit import aggregation
  rng = random.Random(0)
  answers = [answer(f"it00000-p{rng.randrange(6):03d}", f"w{rng.randrange(5)}",
                    rng.choice(["left", "right", "left", "failed"]), n) for n in range(60)]
  ours = aggregate.preference_probabilities(answers)
  rows = [(a["pair_id"], a["worker"], a["answer"]) for a in answers if a["answer"] != "failed"]
  df = pd.DataFrame(rows, columns=["task", "worker", "label"]).drop_duplicates(
      ["task", "worker"], keep="last")
  proba = aggregation.MajorityVote().fit_predict_proba(df)
  assert ours == pytest.approx({t: float(proba.loc[t].get("left", 0.0)) for t in proba.index})


@pytest.mark.parametrize("name", ["dawid_skene", "glad"])
def test_model_based_aggregators_side_with_reliable_workers(name):
  # Workers g1..g3 agree with each other; s1 answers the opposite everywhere.
  answers = []
  for i in range(8):
    truth = "left" if i % 2 else "right"
    other = "right" if truth == "left" else "left"
    pid = f"it00000-p{i:03d}"
    answers += [answer(pid, g, truth) for g in ("g1", "g2", "g3")] + [answer(pid, "s1", other)]
  probs = aggregate.preference_probabilities(answers, name)
  for i in range(8):
    assert (probs[f"it00000-p{i:03d}"] > 0.5) == bool(i % 2)
