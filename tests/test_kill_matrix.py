"""The kill matrix: a tiny crowd-labelled run (``rlhp-jax train``, a child process) against the
Toloka stand-in with asynchronous operations, SIGKILLed at one crash point after another and
resumed each time (``rlhp_jax/faults.py``: ``RLHP_JAX_KILL_AT=<point>:<n>`` makes the child die
there, deterministically).

After every kill and restart: no pair got two tasks and every created task was asked for (pairs
asked == tasks created), at most one unrecorded (orphan) pool exists and it was never opened,
every answer stored before is still stored, the label store holds nothing but whole records
(a torn tail is the only allowed damage). At the end: every answer Toloka was paid for is in the
store, as many tasks were created as by an uninterrupted run, and the final state (preference
buffer included) is bit-for-bit the uninterrupted run's.

Cheap by construction: the smallest config the crowd tests use (4 iterations of 128 env steps,
4 pairs), local clip storage behind an http base URL (workers need not fetch clips), and a
persistent XLA compilation cache shared by the child processes (kept in the system's temporary
folder between sessions). Each restart still traces the jitted functions again, so the cost is
about one short process per kill. ``RLHP_JAX_KILL_MATRIX=full`` adds a kill after every other
kind of label-store event and after a committed checkpoint (19 kills).
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import toloka.client as toloka

from conftest import FAKE_TOLOKA_TOKEN
from rlhp_jax.clips import pair_of_url
from rlhp_jax.crowd import toloka_setup
from rlhp_jax.crowd.config import TolokaConfig
from support import tiny
from support.toloka_standin import TolokaStandIn

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_synthetic.py")
TINY = tiny.args(total_env_steps=512)
CACHE = os.path.join(tempfile.gettempdir(), "rlhp-jax-kill-matrix-xla")

KILLS = [
    "store:clone_requested:1",       # after label-store events ...
    "toloka:clone:after:1",          # Toloka cloned the pool, nothing recorded: an orphan
    "store:pool_cloned:1",
    "toloka:create_tasks:before:1",  # inside task creation, before Toloka accepted it
    "toloka:create_tasks:after:1",   # ... and after (the operation still running)
    "store:tasks_created:1",
    "store:pool_opened:1",
    "download:half:1",               # answers half downloaded
    "store:torn:2",                  # a label-store line half written
    "metrics:before:1",              # between learn and the checkpoint
    "metrics:torn:1",                # a metrics line half written
    "checkpoint:during:1",           # checkpoint files written, not finalized
    "checkpoint:torn:1",             # the newest checkpoint torn: resume falls back
]
FULL_KILLS = [                       # RLHP_JAX_KILL_MATRIX=full: after every kind of event too
    "store:pairs_asked:1", "store:clone_requested:1", "toloka:clone:after:1",
    "store:pool_cloned:1", "store:pool_configured:1", "store:tasks_requested:1",
    "toloka:create_tasks:before:1", "toloka:create_tasks:after:1", "store:tasks_created:1",
    "store:pool_opened:1", "download:half:1", "store:answer:3", "store:torn:2",
    "store:pool_closed:1", "metrics:before:1", "metrics:torn:1", "checkpoint:during:1",
    "checkpoint:after:1", "checkpoint:torn:1",
]
if os.environ.get("RLHP_JAX_KILL_MATRIX") == "full":
  KILLS = FULL_KILLS


def oracle(input_values):
  """Honest, noise-free workers: P(left) is a fixed coin per pair, so every run (killed or
  not) gets the same labels."""
  pid = pair_of_url(input_values["video1"])
  return float(hashlib.sha256(pid.encode()).digest()[0] % 2)


def make_standin():
  standin = TolokaStandIn(FAKE_TOLOKA_TOKEN, num_workers=6, spammer_share=0, failed_share=0,
                          noise=0.0, oracle=oracle, auto_advance=2, operation_polls=2).start()
  client = toloka.TolokaClient(FAKE_TOLOKA_TOKEN, url=standin.url, retries=0)
  tcfg = TolokaConfig()
  project = client.create_project(toloka_setup.make_project(tcfg, "Pick the better clip."))
  training = client.create_training(toloka_setup.make_training(tcfg, project.id, 2))
  pool = client.create_pool(toloka_setup.make_base_pool(tcfg, project.id, training.id))
  return standin, pool.id


def child_env(kill_at=None):
  env = dict(os.environ, TOLOKA_TOKEN=FAKE_TOLOKA_TOKEN, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             PYTHONPATH=ROOT)
  env.pop("RLHP_JAX_KILL_AT", None)
  if kill_at:
    env["RLHP_JAX_KILL_AT"] = kill_at
  return env


def run_child(args, log_path, kill_at=None, timeout=300):
  with open(log_path, "ab") as log:
    log.write(f"\n=== {' '.join(args)} (kill at {kill_at})\n".encode())
    log.flush()
    proc = subprocess.run([sys.executable, "-m", "rlhp_jax.cli", *args], stdout=log,
                          stderr=subprocess.STDOUT, env=child_env(kill_at), timeout=timeout,
                          cwd=ROOT)
  return proc.returncode


def first_run_args(out, standin_url, base_pool_id):
  return ["train", EXP, "--out", out, *TINY, "--labels", "toloka",
          "--toloka.url", standin_url, "--toloka.base-pool-id", base_pool_id,
          "--toloka.overlap", "3", "--toloka.tasks-per-page", "2",
          "--toloka.poll-interval-s", "0.05", "--storage.kind", "local",
          "--storage.public-base-url", "http://clips.invalid/km"]


def read_store(run_dir):
  """Whole records of the label store, read-only (a torn tail is left for the child to cut);
  any other damage fails."""
  path = os.path.join(run_dir, "labels", "labels.jsonl")
  if not os.path.exists(path):
    return []
  data = open(path, "rb").read()
  whole = data[: data.rfind(b"\n") + 1]
  return [json.loads(line) for line in whole.splitlines()]


def run_dir_in(out):
  (name,) = os.listdir(out)
  return os.path.join(out, name)


def pool_tasks(standin):
  """{pool id: [pair ids of its tasks]} for every pool but the base pool."""
  with standin.lock:
    return {pid: [pair_of_url(t["input_values"]["video1"]) for t in standin.pool_tasks(pid)]
            for pid in standin.pools}


def check_invariants(standin, base_pool_id, records, answers_before, what):
  events = [r for r in records if r["type"] == "event"]
  recorded = {e["pool_id"] for e in events if e["event"] == "pool_cloned"}
  requested = {e["pool_id"]: e["pairs"] for e in events if e["event"] == "tasks_requested"}
  tasks = pool_tasks(standin)
  with standin.lock:
    opened = {path.split("/")[-2] for method, path in standin.requests
              if method == "POST" and path.endswith("/open")}
    statuses = {pid: p["status"] for pid, p in standin.pools.items()}
  for pool_id, pairs in tasks.items():
    if pool_id == base_pool_id:
      continue
    assert len(pairs) == len(set(pairs)), f"{what}: a pair got two tasks in pool {pool_id}"
    if pairs:
      assert sorted(pairs) == sorted(requested.get(pool_id, [])), (
          f"{what}: pool {pool_id} has tasks {pairs}, asked for {requested.get(pool_id)}")
  orphans = [pid for pid in tasks if pid != base_pool_id and pid not in recorded]
  assert len(orphans) <= 1, f"{what}: orphan pools {orphans}"
  for pid in orphans:
    assert pid not in opened and statuses[pid] != "OPEN" and not tasks[pid], (
        f"{what}: orphan pool {pid} was used")
  answers = {r["answer_id"] for r in records if r["type"] == "answer"}
  lost = answers_before - answers
  assert not lost, f"{what}: stored answers lost: {sorted(lost)[:3]}"
  return answers, orphans


def final_state(run_dir):
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")))
  step = manager.latest_step()
  payload = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  return step, {k: np.asarray(v) for k, v in payload.items()}


def test_kill_matrix(tmp_path):
  os.makedirs(CACHE, exist_ok=True)
  t0 = time.monotonic()
  # -- the uninterrupted run ---------------------------------------------------------------------
  reference, ref_pool = make_standin()
  try:
    out = str(tmp_path / "reference")
    code = run_child(first_run_args(out, reference.url, ref_pool), tmp_path / "reference.log")
    assert code == 0, open(tmp_path / "reference.log").read()[-3000:]
    assert not reference.errors, reference.errors[0]
    ref_dir = run_dir_in(out)
    with reference.lock:
      ref_tasks = reference.tasks_created
      ref_pools = len(reference.pools)
  finally:
    reference.stop()
  ref_step, ref_state = final_state(ref_dir)
  assert ref_tasks >= 8                                  # several pools' worth of pairs
  t_reference = time.monotonic() - t0

  # -- killed at each point in turn, resumed each time ------------------------------------------
  standin, pool_id = make_standin()
  log = tmp_path / "killed.log"
  out = str(tmp_path / "killed")
  answers, orphans_seen = set(), set()
  try:
    for i, point in enumerate(KILLS):
      args = (first_run_args(out, standin.url, pool_id) if i == 0
              else ["train", "--resume", run_dir_in(out)])
      code = run_child(args, log, kill_at=point)
      assert code == -9, (f"the child did not die at {point} (exit {code}):\n"
                          + open(log).read()[-3000:])
      assert not standin.errors, standin.errors[0]
      answers, orphans = check_invariants(standin, pool_id, read_store(run_dir_in(out)),
                                          answers, f"after a kill at {point}")
      orphans_seen.update(orphans)
    code = run_child(["train", "--resume", run_dir_in(out)], log)
    assert code == 0, open(log).read()[-3000:]
    records = read_store(run_dir_in(out))
    answers, orphans = check_invariants(standin, pool_id, records, answers, "at the end")
    with standin.lock:
      tasks_created = standin.tasks_created
      paid = {f"{a['id']}/{t['id']}" for a in standin.assignments.values()
              if a["status"] in ("SUBMITTED", "ACCEPTED") for t in a["tasks"]}
      pools = len(standin.pools)
  finally:
    standin.stop()
  text = open(log).read()
  # the crash points were really crossed: an orphan archived, a torn line and a torn checkpoint
  assert orphans_seen and "archived pool" in text
  assert "cut a torn last line" in text
  assert "is unreadable" in text and "falling back" in text
  # pairs asked == tasks created, as without kills; every paid answer stored
  assert tasks_created == ref_tasks
  assert tasks_created == sum(len(r["pairs"]) for r in records
                              if r.get("event") == "tasks_created")
  assert pools == ref_pools + 1                          # the one archived orphan
  assert paid <= answers, f"paid but not stored: {sorted(paid - answers)[:3]}"
  # the final state, preference buffer included, equals the uninterrupted run's
  step, state = final_state(run_dir_in(out))
  assert step == ref_step and state.keys() == ref_state.keys()
  differ = [k for k in state if not np.array_equal(state[k], ref_state[k])]
  assert not differ, f"final state differs from the uninterrupted run's in {differ[:5]}"
  print(f"kill matrix: {len(KILLS)} kills; reference {t_reference:.0f}s, "
        f"total {time.monotonic() - t0:.0f}s")
