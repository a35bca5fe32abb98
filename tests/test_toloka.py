"""The crowd path end to end against real protocol peers, offline: the toloka-kit client talks to
the local Toloka stand-in (simulated workers), clips go to a moto S3 server on loopback.

  * a full crowd-labelled run: rollout -> select pairs -> render -> upload to S3 -> Toloka
    stand-in -> crowd-kit aggregate -> label store -> reward update; labels agree with the
    oracle well above chance, and no secret reaches the run directory;
  * kill while a pool is open, restart: no task created twice, no answer lost;
  * failures: bad token, missing pool, 429/5xx retried, a pool closing with unanswered tasks,
    pairs that only ever "failed to load" (re-queued once, then dropped).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time


import httpx
import numpy as np
import pytest
import toloka.client as toloka

from conftest import FAKE_AWS, FAKE_TOLOKA_TOKEN
from rlhp_jax import cli, clips, core, experiment, fragments, label_store, loop
from rlhp_jax.crowd import toloka_setup
from rlhp_jax.clips import pair_of_url
from rlhp_jax.crowd.toloka_gatherer import CrowdError, TolokaGatherer
from support import tiny
from support.toloka_standin import TolokaStandIn

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_synthetic.py")
# The same tiny run as tests/test_loop.py, so the jitted collect/learn come from the cache.
TINY = tiny.args(total_env_steps=512)


@pytest.fixture(autouse=True)
def token(monkeypatch):
  monkeypatch.setenv("TOLOKA_TOKEN", FAKE_TOLOKA_TOKEN)



def make_gatherer(cfg, run_dir, **kwargs):
  """A Toloka gatherer for ``cfg``'s sections, as ``cli.make_gatherer`` builds one."""
  return TolokaGatherer(cfg.toloka, cfg.storage, cfg.clips, run_dir, env_dt=cfg.env.dt,
                        **kwargs)


def crowd_config(standin, s3, base_pool_id, **toloka_fields):
  endpoint, bucket = s3
  cfg = experiment.override(experiment.load_experiment(EXP), TINY)
  return dataclasses.replace(
      cfg, name="crowd_test", labels="toloka",
      storage=dataclasses.replace(cfg.storage, kind="s3", bucket=bucket, endpoint_url=endpoint,
                                  prefix="tests"),
      toloka=dataclasses.replace(cfg.toloka, url=standin.url, base_pool_id=base_pool_id,
                                 overlap=3, tasks_per_page=2, poll_interval_s=0.05,
                                 **toloka_fields))


def make_base_pool(standin, cfg_toloka) -> str:
  client = toloka.TolokaClient(FAKE_TOLOKA_TOKEN, url=standin.url, retries=0)
  project = client.create_project(toloka_setup.make_project(cfg_toloka, "Pick the better clip."))
  training = client.create_training(toloka_setup.make_training(cfg_toloka, project.id, 2))
  pool = client.create_pool(toloka_setup.make_base_pool(cfg_toloka, project.id, training.id))
  return pool.id


def scripted_query(num_pairs=4, length=8, asked=(0, 1, 3), seed=0) -> core.Query:
  """A query as the external driver hands it over (numpy leaves), with made-up poses and
  oracle rewards."""
  rng = np.random.default_rng(seed)
  qpos = np.zeros((num_pairs, 2, length, 6))
  qpos[..., 1] = 1.25
  qpos[..., 0] = rng.uniform(0, 1, (num_pairs, 2, 1)) * np.arange(length) * 0.01
  pairs = fragments.FragmentPairs(obs=np.zeros((num_pairs, 2, length, 11)),
                                  action=np.zeros((num_pairs, 2, length, 3)),
                                  true_reward=rng.normal(size=(num_pairs, 2, length)),
                                  qpos=qpos, qvel=np.zeros_like(qpos),
                                  counted=np.ones((num_pairs, 2, length)))
  return core.Query(pairs=pairs, mask=np.isin(np.arange(num_pairs), asked),
                    disagreement=np.zeros(num_pairs), teacher_key=np.zeros(2, np.uint32),
                    learn_key=np.zeros(2, np.uint32))


class OracleTable:
  """The stand-in's workers judge by the oracle: P(left) from the pair's true returns."""

  def __init__(self):
    self.returns = {}

  def record(self, query, iteration):
    r = np.asarray(query.pairs.true_reward).sum(-1)
    for i in clips.asked(query):
      self.returns[clips.pair_id(iteration, i)] = r[i]

  def __call__(self, input_values):
    r = self.returns[pair_of_url(input_values["video1"])]
    return 1.0 if r[0] > r[1] else 0.0


class Recording:
  """Wraps a gatherer: tells the oracle about each query and keeps (query, labels)."""

  def __init__(self, inner, oracle):
    self.inner, self.oracle, self.calls = inner, oracle, []

  def label(self, query, iteration):
    self.oracle.record(query, iteration)
    label, valid = self.inner.label(query, iteration)
    self.calls.append((iteration, query, label, valid))
    return label, valid

  def close(self):
    self.inner.close()


def files_under(path):
  for root, _, names in os.walk(path):
    for name in names:
      yield os.path.join(root, name)


# -- the full crowd-labelled run ---------------------------------------------------------------

def test_crowd_labelled_run_end_to_end(s3_server, tmp_path):
  oracle = OracleTable()
  with TolokaStandIn(FAKE_TOLOKA_TOKEN, num_workers=12, spammer_share=0.17, failed_share=0.09,
                     noise=0.1, oracle=oracle, fetch_videos=True, auto_advance=3) as standin:
    cfg = crowd_config(standin, s3_server, make_base_pool(standin, crowd_config(
        standin, s3_server, "x").toloka))
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    experiment.save(cfg, os.path.join(run_dir, "config.json"))
    recording = Recording(make_gatherer(cfg, run_dir), oracle)
    summary = loop.train_external(cfg, run_dir, recording)
    assert not standin.errors
    fetched = [ok for _, ok in standin.video_fetches]
    assert fetched and all(fetched)                 # workers really loaded the clips from S3

  # labels agree with the oracle well above chance
  agree, n = 0, 0
  for _, query, label, valid in recording.calls:
    r = query.pairs.true_reward.sum(-1)
    for i in np.flatnonzero(query.mask & valid):
      if label[i] != 0.5:
        agree += (label[i] > 0.5) == (r[i, 0] > r[i, 1])
        n += 1
  assert n >= 8 and agree / n >= 0.75, (agree, n)
  # every raw answer is in the store; the reward model trained on the labels
  store = label_store.LabelStore(run_dir)
  answers = store.answers(source="toloka")
  asked = sum(int(q.mask.sum()) for _, q, _, _ in recording.calls)
  assert len(answers) >= 3 * asked
  assert {a["answer"] for a in answers} >= {"left", "right"}
  rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
  rows = [r for r in rows if "prefs/labels" in r]      # iteration rows (not the final eval's)
  assert rows[-1]["prefs/labels"][0] > 0
  assert np.isfinite(rows[-1]["reward/train_nll"][0])
  assert summary["labels_per_run"][0] == rows[-1]["prefs/labels"][0]
  # clips were rendered only for the pairs asked for
  drawn = [f for f in os.listdir(os.path.join(run_dir, "clips")) if f.endswith(".mp4")]
  assert len(drawn) == 2 * asked
  # no secret anywhere under the run directory
  secrets = [FAKE_TOLOKA_TOKEN, FAKE_AWS["AWS_SECRET_ACCESS_KEY"], FAKE_AWS["AWS_ACCESS_KEY_ID"]]
  for path in files_under(run_dir):
    data = open(path, "rb").read()
    for secret in secrets:
      assert secret.encode() not in data, (path, secret[:6])


# -- kill while a pool is open, restart ----------------------------------------------------------

CHILD = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from rlhp_jax import experiment
from rlhp_jax.crowd.toloka_gatherer import TolokaGatherer
if __name__ == "__main__":
  cfg = experiment.load_experiment({config!r})
  data = np.load({query!r}, allow_pickle=True).item()
  TolokaGatherer(cfg.toloka, cfg.storage, cfg.clips, {run_dir!r},
                 env_dt=cfg.env.dt).label(data, 0)
"""


def wait_for(predicate, timeout=120, what=""):
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    if predicate():
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out waiting for {what}")


def test_kill_while_pool_open_then_restart_loses_and_rebuys_nothing(s3_server, tmp_path):
  query = scripted_query(num_pairs=4, asked=(0, 1, 2, 3))
  oracle = OracleTable()
  oracle.record(query, 0)
  with TolokaStandIn(FAKE_TOLOKA_TOKEN, num_workers=6, spammer_share=0, failed_share=0,
                     noise=0.0, oracle=oracle) as standin:
    cfg = crowd_config(standin, s3_server, "")
    cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(
        cfg.toloka, base_pool_id=make_base_pool(standin, cfg.toloka)))
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    experiment.save(cfg, os.path.join(run_dir, "config.json"))
    np.save(tmp_path / "query.npy", query, allow_pickle=True)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=ROOT, config=os.path.join(run_dir, "config.json"),
                                   query=str(tmp_path / "query.npy"), run_dir=run_dir))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=dict(os.environ))
    store_path = os.path.join(run_dir, "labels", "labels.jsonl")

    def records():
      if not os.path.exists(store_path):
        return []
      return [json.loads(line) for line in open(store_path) if line.endswith("\n")]

    try:
      wait_for(lambda: any(r.get("event") == "pool_opened" for r in records()),
               what="the pool to open")
      standin.advance(2)                              # two task suites answered (4 answers)
      wait_for(lambda: sum(r["type"] == "answer" for r in records()) >= 4,
               what="the child to store the answers")
    finally:
      child.send_signal(signal.SIGKILL)
      out = child.communicate()[0].decode()
    before = [r for r in records() if r["type"] == "answer"]
    assert len(before) >= 4, out
    pools_before = len(standin.pools)
    tasks_before = standin.tasks_created
    assert tasks_before == 4

    standin.auto_advance = 2                          # the crowd goes on working
    restarted = make_gatherer(cfg, run_dir)
    label, valid = restarted.label(query, 0)
    assert not standin.errors
    assert standin.tasks_created == tasks_before     # no task created twice
    assert len(standin.pools) == pools_before         # no second pool for the same batch
  after = label_store.LabelStore(run_dir).answers(iteration=0)
  ids_after = [a["answer_id"] for a in after]
  assert len(ids_after) == len(set(ids_after)) == 4 * 3        # every answer once
  assert {a["answer_id"] for a in before} <= set(ids_after)   # none lost
  r = query.pairs.true_reward.sum(-1)
  assert valid.all()
  np.testing.assert_array_equal(label > 0.5, r[:, 0] > r[:, 1])


# -- failures ------------------------------------------------------------------------------------

@pytest.fixture()
def crowd(s3_server, tmp_path):
  """(standin, cfg, run_dir) with a base pool; the stand-in is started, stopped at the end."""
  oracle = OracleTable()
  standin = TolokaStandIn(FAKE_TOLOKA_TOKEN, num_workers=6, spammer_share=0, failed_share=0,
                          noise=0.0, oracle=oracle, auto_advance=2).start()
  cfg = crowd_config(standin, s3_server, "")
  cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(
      cfg.toloka, base_pool_id=make_base_pool(standin, cfg.toloka)))
  run_dir = str(tmp_path / "run")
  os.makedirs(run_dir)
  yield standin, cfg, run_dir, oracle
  standin.stop()


def test_bad_token_is_a_clear_error(crowd, monkeypatch):
  standin, cfg, run_dir, oracle = crowd
  monkeypatch.setenv("TOLOKA_TOKEN", "expired-token")
  query = scripted_query()
  oracle.record(query, 0)
  with pytest.raises(CrowdError, match="token was rejected.*TOLOKA_TOKEN"):
    make_gatherer(cfg, run_dir).label(query, 0)


def test_missing_pool_is_a_clear_error(crowd):
  standin, cfg, run_dir, oracle = crowd
  cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(cfg.toloka, base_pool_id="999999"))
  query = scripted_query()
  oracle.record(query, 0)
  with pytest.raises(CrowdError, match="not found.*base_pool_id"):
    make_gatherer(cfg, run_dir).label(query, 0)


def test_transient_failures_are_retried(crowd):
  standin, cfg, run_dir, oracle = crowd
  standin.inject_failures(status=500, times=1, path_contains="/clone")
  standin.inject_failures(status=429, times=1, path_contains="/v1/tasks", method="POST")
  standin.inject_failures(status=503, times=2, path_contains="/v1/assignments")
  query = scripted_query()
  oracle.record(query, 0)
  label, valid = make_gatherer(cfg, run_dir).label(query, 0)
  assert not standin.errors
  assert valid.sum() == 3 and standin.tasks_created == 3
  clones = [p for m, p in standin.requests if p.endswith("/clone")]
  assert len(clones) == 2                          # the failed call, then its retry


def test_pool_closing_with_unanswered_tasks_is_a_counted_skip(crowd, logs):
  standin, cfg, run_dir, oracle = crowd
  standin.auto_advance = 0                         # nobody works
  cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(cfg.toloka, timeout_s=0.3))
  query = scripted_query()
  oracle.record(query, 0)
  gatherer = make_gatherer(cfg, run_dir)
  label, valid = gatherer.label(query, 0)
  assert not valid.any()
  assert gatherer.stats["skipped_no_answer"] == 3
  assert any("without answers" in line for line in logs)
  (pool,) = [p for p in standin.pools.values() if p.get("private_name", "").endswith(
      "iteration 0")]
  assert pool["status"] == "CLOSED"                # we stopped paying for it


def test_only_failed_to_load_pairs_are_requeued_then_dropped(crowd):
  standin, cfg, run_dir, oracle = crowd
  for worker in standin.workers:
    standin.workers[worker] = "failed"             # no clip ever loads
  query = scripted_query()
  oracle.record(query, 0)
  gatherer = make_gatherer(cfg, run_dir)
  label, valid = gatherer.label(query, 0)
  assert not valid.any()
  assert gatherer.stats["dropped_failed_to_load"] == 3
  assert standin.tasks_created == 6                # asked once more in a fresh pool
  answers = label_store.LabelStore(run_dir).answers()
  assert answers and all(a["answer"] == "failed" for a in answers)


# -- setup as code ------------------------------------------------------------------------------

def test_toloka_setup_command_creates_project_training_and_base_pool(s3_server, tmp_path,
                                                                     capsys):
  endpoint, bucket = s3_server
  with TolokaStandIn(FAKE_TOLOKA_TOKEN) as standin:
    code = cli.main(["toloka", "setup", EXP, "--out", str(tmp_path), "--training-tasks", "3",
                     *TINY, "--toloka.url", standin.url, "--storage.kind", "s3",
                     "--storage.bucket", bucket, "--storage.endpoint-url", endpoint])
    out = capsys.readouterr().out
    assert code == 0, out
    assert not standin.errors
    (project,) = standin.projects.values()
    (training,) = standin.trainings.values()
    (pool,) = standin.pools.values()
  assert f"--toloka.base-pool-id {pool['id']}" in out
  assert f"--toloka.project-id {project['id']}" in out
  # the seed's interface: two played videos side by side, A / B / failed, hotkeys
  spec = project["task_spec"]
  assert set(spec["input_spec"]) == {"video1", "video2"}
  assert spec["output_spec"]["result"]["allowed_values"] == ["left", "right", "error"]
  view = json.loads(spec["view_spec"]["config"])
  assert view["view"]["type"] == "layout.side-by-side"
  hotkeys = [p for p in view["plugins"] if p["type"] == "plugin.hotkeys"][0]
  assert {"1", "2", "3", "q", "w"} <= set(hotkeys)
  assert "robot" in project["public_instructions"]
  # training tasks with known answers; the base pool's quality control from the config
  train_tasks = [t for t in standin.tasks.values() if t["pool_id"] == training["id"]]
  assert len(train_tasks) == 3
  assert all(t["known_solutions"][0]["output_values"]["result"] in ("left", "right")
             for t in train_tasks)
  qc = pool["quality_control"]
  assert qc["training_requirement"] == {"training_pool_id": training["id"],
                                        "training_passing_skill_value": 80}
  collectors = {c["collector_config"]["type"] for c in qc["configs"]}
  assert collectors == {"ASSIGNMENT_SUBMIT_TIME", "MAJORITY_VOTE"}
  assert pool["defaults"]["default_overlap_for_new_tasks"] == 3
  assert float(pool["reward_per_assignment"]) == 0.01


# -- the fault matrix of the Toloka path --------------------------------------------------------

class Client:
  """A toloka-kit client with some methods replaced (``name=fn(inner, *args, **kwargs)``)."""

  def __init__(self, inner, **replaced):
    self.inner, self.replaced = inner, replaced

  def __getattr__(self, name):
    if name in self.replaced:
      return lambda *a, **k: self.replaced[name](self.inner, *a, **k)
    return getattr(self.inner, name)


def real_client(standin):
  return toloka.TolokaClient(FAKE_TOLOKA_TOKEN, url=standin.url, retries=0)


def asked(standin, pool_ids=None):
  """Pair ids of every task created, over all pools but the base pool (or ``pool_ids``)."""
  with standin.lock:
    return sorted(pair_of_url(t["input_values"]["video1"]) for t in standin.tasks.values()
                  if (pool_ids is None or t["pool_id"] in pool_ids)
                  and pair_of_url(t["input_values"]["video1"]))


@pytest.mark.parametrize("fault", ["503 after accepted", "timeout after accepted"])
def test_a_lost_answer_to_an_accepted_task_creation_creates_no_duplicate(crowd, fault):
  standin, cfg, run_dir, oracle = crowd
  standin.operation_polls = 2                      # creation runs in the background
  lost = []

  def create_then_lose_the_answer(inner, *args, **kwargs):
    op = inner.create_tasks_async(*args, **kwargs)
    if not lost:
      lost.append(op.id)
      raise httpx.ReadTimeout("timed out")
    return op
  client = real_client(standin)
  if fault.startswith("503"):
    standin.inject_failures(status=503, times=1, path_contains="/v1/tasks", method="POST",
                            after=True)
  else:
    client = Client(client, create_tasks_async=create_then_lose_the_answer)
  query = scripted_query()
  oracle.record(query, 0)
  label, valid = make_gatherer(cfg, run_dir, client=client).label(query, 0)
  assert not standin.errors
  posts = [p for m, p in standin.requests if m == "POST" and p.endswith("/v1/tasks")]
  assert len(posts) == 2                           # the request, then its retry ...
  assert standin.tasks_created == 3                # ... with the same operation id: 3 tasks
  assert asked(standin) == ["it00000-p000", "it00000-p001", "it00000-p003"]
  assert valid.sum() == 3


def test_an_outage_of_several_poll_intervals_is_survived(crowd, logs):
  standin, cfg, run_dir, oracle = crowd
  query = scripted_query()
  oracle.record(query, 0)
  standin.auto_advance = 0
  real = real_client(standin)
  clock = {"t": time.time()}
  polls = []

  def get_pool(inner, pool_id):
    if pool_id != cfg.toloka.base_pool_id and any(
        e.get("event") == "pool_opened" for e in label_store.LabelStore(run_dir).events()):
      polls.append(clock["t"])
      if clock["t"] - polls[0] < 1800:             # Toloka unreachable for 30 minutes
        raise httpx.ConnectError("connection refused")
      standin.advance()                            # back: the crowd has done the work
    return inner.get_pool(pool_id)

  def sleep(seconds):
    clock["t"] += seconds
  cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(cfg.toloka, poll_interval_s=60.0))
  gatherer = make_gatherer(cfg, run_dir, client=Client(real, get_pool=get_pool),
                            sleep=sleep, clock=lambda: clock["t"])
  label, valid = gatherer.label(query, 0)
  failed = [line for line in logs if "poll of pool" in line and "failed" in line]
  assert len(failed) >= 30 and "outage 1740s so far" in failed[-1]   # one line per failed poll
  assert valid.sum() == 3


def test_an_outage_beyond_the_limit_stops_resumably(crowd):
  standin, cfg, run_dir, oracle = crowd
  query = scripted_query()
  oracle.record(query, 0)
  standin.auto_advance = 0
  standin.inject_failures(status=503, times=10**6, path_contains="/v1/pools/", method="GET")
  cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(cfg.toloka, outage_timeout_s=0.3,
                                                            retry_budget_s=0.3))
  from rlhp_jax.crowd.retry import RetriesExhausted
  with pytest.raises(RetriesExhausted, match="then resume"):
    make_gatherer(cfg, run_dir).label(query, 0)


def test_late_answers_after_a_timeout_are_downloaded(crowd):
  standin, cfg, run_dir, oracle = crowd
  query = scripted_query()
  oracle.record(query, 0)
  standin.auto_advance = 0
  cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(cfg.toloka, timeout_s=0.3))
  taken, submitted = [], []

  def get_pool(inner, pool_id):
    pool = inner.get_pool(pool_id)
    if pool.is_open() and not taken:
      taken.append(standin.take(2, pool_id))       # two workers take a page each ...
    return pool

  def find_assignments(inner, **kwargs):
    if kwargs.get("status") == "ACTIVE" and not submitted:
      submitted.append(standin.advance(2))         # ... and submit after the pool closed
    return inner.find_assignments(**kwargs)
  client = Client(real_client(standin), get_pool=get_pool, find_assignments=find_assignments)
  label, valid = make_gatherer(cfg, run_dir, client=client).label(query, 0)
  assert taken == [2] and submitted == [2]
  store = label_store.LabelStore(run_dir)
  assert len(store.answers(iteration=0)) == 4      # 2 pages x 2 tasks, paid and kept
  assert store.last_event("pool_timed_out") is not None
  with standin.lock:
    assert {a["status"] for a in standin.assignments.values()} == {"ACCEPTED"}
    stored = {a["answer_id"].split("/")[0] for a in store.answers()}
    assert stored == set(standin.assignments)


@pytest.mark.parametrize("reason", ["NOT_ENOUGH_BALANCE", "EXPIRED"])
def test_a_pool_closed_by_toloka_is_reported_with_its_reason(crowd, reason, logs):
  standin, cfg, run_dir, oracle = crowd
  query = scripted_query()
  oracle.record(query, 0)
  standin.auto_advance = 0

  def get_pool(inner, pool_id):
    pool = inner.get_pool(pool_id)
    if pool.is_open():
      standin.advance(1)
      standin.close_pool(pool_id, reason)
    return pool
  gatherer = make_gatherer(cfg, run_dir, client=Client(real_client(standin), get_pool=get_pool))
  if reason == "NOT_ENOUGH_BALANCE":
    with pytest.raises(CrowdError, match="closed by Toloka: NOT_ENOUGH_BALANCE.*top it up.*2 "
                                         "answer"):
      gatherer.label(query, 0)
  else:
    label, valid = gatherer.label(query, 0)
    assert any("was closed: EXPIRED" in line for line in logs)
    assert valid.sum() == 2 and gatherer.stats["skipped_no_answer"] == 1   # one page of two
  assert len(label_store.LabelStore(run_dir).answers()) == 2   # what was paid for is kept


def test_progress_analytics_failures_never_stop_a_run(crowd, logs):
  standin, cfg, run_dir, oracle = crowd
  standin.auto_advance = 1
  standin.inject_failures(status=400, times=10**6, path_contains="/staging/analytics")
  query = scripted_query()
  oracle.record(query, 0)
  label, valid = make_gatherer(cfg, run_dir).label(query, 0)
  assert valid.sum() == 3
  assert sum("progress unavailable" in line for line in logs) == 1


def test_an_unrecorded_clone_is_archived_and_never_opened(crowd, logs):
  standin, cfg, run_dir, oracle = crowd
  lost = []

  def clone_then_lose_the_answer(inner, pool_id):
    op = inner.clone_pool_async(pool_id)
    if not lost:
      lost.append(op.details.pool_id)
      raise httpx.RemoteProtocolError("connection closed")
    return op
  query = scripted_query()
  oracle.record(query, 0)
  client = Client(real_client(standin), clone_pool_async=clone_then_lose_the_answer)
  label, valid = make_gatherer(cfg, run_dir, client=client).label(query, 0)
  (orphan,) = lost
  with standin.lock:
    assert standin.pools[orphan]["status"] == "ARCHIVED" and not standin.pool_tasks(orphan)
    assert ("POST", f"/api/v1/pools/{orphan}/open") not in standin.requests
  assert any(f"archived pool {orphan}" in line for line in logs)
  assert valid.sum() == 3 and standin.tasks_created == 3


def test_a_resume_that_recomputes_other_pairs_stops_then_drop_iteration(crowd, capsys):
  standin, cfg, run_dir, oracle = crowd
  experiment.save(cfg, os.path.join(run_dir, "config.json"))
  query = scripted_query()
  oracle.record(query, 0)
  make_gatherer(cfg, run_dir).label(query, 0)
  tasks = standin.tasks_created
  other = scripted_query(seed=1)                   # another machine's recomputation
  from rlhp_jax.label_store import PairMismatchError
  with pytest.raises(PairMismatchError, match=r"iteration 0: pair it00000-p000 is not the pair "
                                              r".*labels drop-iteration"):
    make_gatherer(cfg, run_dir).label(other, 0)
  assert cli.main(["labels", "drop-iteration", run_dir, "0"]) == 0
  label, valid = make_gatherer(cfg, run_dir).label(other, 0)
  assert not valid.any() and standin.tasks_created == tasks   # nothing attached, nothing paid


def test_tasks_toloka_rejects_are_one_line(s3_server, tmp_path):
  with TolokaStandIn(FAKE_TOLOKA_TOKEN, operation_polls=1) as standin:
    client = real_client(standin)
    cfg = crowd_config(standin, s3_server, "")
    project = toloka_setup.make_project(cfg.toloka, "x")
    project.task_spec.input_spec = {"image": project.task_spec.input_spec["video1"]}
    project = client.create_project(project)
    training = client.create_training(toloka_setup.make_training(cfg.toloka, project.id, 1))
    pool = client.create_pool(toloka_setup.make_base_pool(cfg.toloka, project.id, training.id))
    cfg = dataclasses.replace(cfg, toloka=dataclasses.replace(cfg.toloka, base_pool_id=pool.id))
    with pytest.raises(CrowdError, match="rejected the tasks.*input spec have 'video1'"):
      make_gatherer(cfg, str(tmp_path)).label(scripted_query(), 0)
    assert standin.tasks_created == 0
