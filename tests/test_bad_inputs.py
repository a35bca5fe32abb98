"""Every bad input we know of, run through the CLI: one line on stderr naming the file or field
and the fix, exit status 2 for bad input (4: the run is in use), no traceback, and nothing
created. The table of inputs and messages in docs/bad_inputs.md is this test's output: it fails
when the table is stale; ``RLHP_JAX_WRITE_DOCS=1`` rewrites it."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from conftest import FAKE_AWS, FAKE_TOLOKA_TOKEN
from rlhp_jax import cli, experiment
from support.toloka_standin import TolokaStandIn

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_ppo_true_reward.py")
TOLOKA_EXP = os.path.join(ROOT, "experiments", "hopper_backflip_toloka.py")
HUMAN_EXP = os.path.join(ROOT, "experiments", "hopper_human.py")
SYN_EXP = os.path.join(ROOT, "experiments", "hopper_synthetic.py")
DOC = os.path.join(ROOT, "docs", "bad_inputs.md")


@pytest.fixture(scope="module")
def standin():
  with TolokaStandIn(FAKE_TOLOKA_TOKEN) as s:
    import toloka.client as toloka
    from rlhp_jax.crowd import toloka_setup
    from rlhp_jax.crowd.config import TolokaConfig
    client = toloka.TolokaClient(FAKE_TOLOKA_TOKEN, url=s.url, retries=0)
    project = client.create_project(toloka_setup.make_project(TolokaConfig(), "x"))
    training = client.create_training(toloka_setup.make_training(TolokaConfig(), project.id, 1))
    s.base_pool_id = client.create_pool(toloka_setup.make_base_pool(
        TolokaConfig(), project.id, training.id)).id
    yield s


def write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return path


def saved_run(tmp, mutate=None, name="run"):
  """A run directory with a saved config.json, changed by ``mutate(dict)`` (or replaced by
  the string it returns)."""
  run = os.path.join(tmp, name)
  os.makedirs(run, exist_ok=True)
  path = os.path.join(run, "config.json")
  experiment.save(experiment.load_experiment(EXP), path)
  if mutate is not None:
    data = json.load(open(path))
    out = mutate(data)
    write(path, out if isinstance(out, str) else json.dumps(data))
  return run


def toloka_args(standin, s3, *extra):
  endpoint, bucket = s3
  return ["train", TOLOKA_EXP, "--toloka.url", standin.url, "--toloka.base-pool-id",
          standin.base_pool_id, "--storage.bucket", bucket, "--storage.endpoint-url", endpoint,
          *extra]


def held_run(tmp):
  """A run directory whose lock another (live) process holds; returns (run, process)."""
  run = saved_run(tmp, name="busy")
  code = (f"import sys, time; sys.path.insert(0, {ROOT!r}); from rlhp_jax import run_lock; "
          f"run_lock.lock({run!r}, 'rlhp-jax train --resume'); print('ok', flush=True); "
          "time.sleep(60)")
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
  assert proc.stdout.readline().strip() == b"ok"
  return run, proc


def busy_port():
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  sock.listen()
  return sock


# (what, how to make it: tmp -> (argv, env changes), exit status, text the line must hold)
CASES = [
    ("experiment file missing", lambda t, c: (["train", "experiments/nope.py"], {}),
     2, "no such file"),
    ("syntax error in the experiment file",
     lambda t, c: (["train", write(f"{t}/exp/broken.py", "CONFIG = (\n")], {}), 2, "line"),
    ("import error in the experiment file",
     lambda t, c: (["train", write(f"{t}/exp/imports.py", "from rlhp_jax.nothing import X\n")],
                   {}), 2, "fix the import"),
    ("experiment file without CONFIG",
     lambda t, c: (["train", write(f"{t}/exp/empty.py", "x = 1\n")], {}), 2, "CONFIG"),
    ("unknown override field", lambda t, c: (["train", EXP, "--ppo.num-env", "8"], {}),
     2, "--ppo.num-envs"),
    ("override of the wrong type", lambda t, c: (["train", EXP, "--ppo.num-envs", "abc"], {}),
     2, "--ppo.num-envs"),
    ("override with a value out of range", lambda t, c: (["train", EXP, "--ppo.num-envs", "0"],
                                                          {}), 2, "ppo.num_envs"),
    ("override with an unknown choice", lambda t, c: (["train", EXP, "--env.mode", "sideways"],
                                                       {}), 2, "--env.mode"),
    ("a budget too small for the initial labels",
     lambda t, c: (["train", SYN_EXP, "--ppo.num-envs", "8", "--ppo.unroll-length", "16",
                    "--ppo.num-minibatches", "2", "--prefs.fragment-length", "8",
                    "--prefs.rollouts-per-iteration", "1",
                    "--prefs.total-labels", "24", "--prefs.initial-fraction", "0.25",
                    "--prefs.pairs-per-iteration", "4",
                    "--run.iterations-per-call", "1", "--run.total-env-steps", "256"], {}),
     2, "prefs.pairs_per_iteration"),
    ("labels 'external' with reward_source 'true'",
     lambda t, c: (["train", EXP, "--labels", "external"], {}), 2, "reward_source='preferences'"),
    ("labels 'external' with two seeds",
     lambda t, c: (["train", SYN_EXP, "--labels", "external", "--run.num-seeds", "2"], {}), 2,
     "run.num_seeds"),
    ("config.json of an external run with two seeds",
     lambda t, c: (["train", "--resume", saved_run(t, lambda d: (
         d.update(labels="external", reward_source="preferences"),
         d["run"].update(num_seeds=2)))], {}), 2, "run.num_seeds"),
    ("--out on a path that cannot be created",
     lambda t, c: (["train", EXP, "--out", "/etc/hostname/runs"], {}), 2, "--out"),
    ("--resume on a folder without config.json",
     lambda t, c: (["train", "--resume", t], {}), 2, "config.json"),
    ("--resume with overrides",
     lambda t, c: (["train", "--resume", saved_run(t), "--ppo.num-envs", "8"], {}),
     2, "takes no overrides"),
    ("config.json that is not JSON",
     lambda t, c: (["train", "--resume", saved_run(t, lambda d: '{"name": "x",')], {}),
     2, "not valid JSON"),
    ("config.json that is not an object",
     lambda t, c: (["train", "--resume", saved_run(t, lambda d: "[1, 2]")], {}),
     2, "not a config object"),
    ("config.json with an unknown field",
     lambda t, c: (["train", "--resume", saved_run(t, lambda d: d["ppo"].update(
         learning_rte=1))], {}),
     2, "did you mean 'ppo.learning_rate'"),
    ("config.json with a section of the wrong type",
     lambda t, c: (["train", "--resume", saved_run(t, lambda d: d.update(ppo=5))], {}),
     2, "must be a section"),
    ("config.json with a field of the wrong type",
     lambda t, c: (["train", "--resume", saved_run(t, lambda d: d["ppo"].update(
         num_envs="eight"))], {}), 2, "ppo.num_envs"),
    ("TOLOKA_TOKEN not set",
     lambda t, c: (toloka_args(c[0], c[1]), {"TOLOKA_TOKEN": None}), 2, "TOLOKA_TOKEN"),
    ("TOLOKA_TOKEN with non-ASCII characters",
     lambda t, c: (toloka_args(c[0], c[1]), {"TOLOKA_TOKEN": "tok\u00e9n-\u2013"}), 2, "non-ASCII"),
    ("TOLOKA_TOKEN that Toloka rejects",
     lambda t, c: (toloka_args(c[0], c[1]), {"TOLOKA_TOKEN": "expired-token"}), 2, "rejected"),
    ("toloka.base_pool_id empty",
     lambda t, c: (toloka_args(c[0], c[1]) + ["--toloka.base-pool-id", ""], {}), 2,
     "toloka.base_pool_id"),
    ("toloka.base_pool_id that Toloka does not have",
     lambda t, c: (toloka_args(c[0], c[1]) + ["--toloka.base-pool-id", "424242"], {}), 2,
     "toloka.base_pool_id"),
    ("toloka.url that is not http(s)",
     lambda t, c: (toloka_args(c[0], c[1]) + ["--toloka.url", "toloka.dev"], {}), 2, "toloka.url"),
    ("storage.bucket empty for S3",
     lambda t, c: (toloka_args(c[0], c[1]) + ["--storage.bucket", ""], {}), 2, "storage.bucket"),
    ("S3 bucket that does not exist",
     lambda t, c: (toloka_args(c[0], c[1]) + ["--storage.bucket", "no-such-bucket"], {}), 2,
     "storage.bucket"),
    ("AWS credentials missing",
     lambda t, c: (toloka_args(c[0], c[1]), {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                                     "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                     "AWS_CONFIG_FILE": "/nonexistent",
                                     "AWS_EC2_METADATA_DISABLED": "true"}), 2,
     "AWS_ACCESS_KEY_ID"),
    ("human.port already in use",
     lambda t, c: (["train", HUMAN_EXP, "--human.port", str(c[2].getsockname()[1])], {}), 2,
     "human.port"),
    ("human.host that does not resolve",
     lambda t, c: (["train", HUMAN_EXP, "--human.host", "no-such-host.invalid", "--human.port",
                    "0"], {}), 2, "human.host"),
    ("human.host that is not an address of this machine",
     lambda t, c: (["train", HUMAN_EXP, "--human.host", "192.0.2.1"], {}), 2, "human.host"),
    ("storage.local_dir that cannot be written",
     lambda t, c: (toloka_args(c[0], c[1]) + ["--storage.kind", "local", "--storage.local-dir",
                                               "/etc/hostname/clips"], {}), 2,
     "storage.local_dir"),
    ("human.allowed_hosts that is not a host name",
     lambda t, c: (["train", HUMAN_EXP, "--human.allowed-hosts", "http://x/"], {}), 2,
     "human.allowed_hosts"),
    ("render on a folder without config.json", lambda t, c: (["render", t], {}), 2,
     "config.json"),
    ("labels drop-iteration with a negative iteration",
     lambda t, c: (["labels", "drop-iteration", saved_run(t), "-1"], {}), 2, "iteration"),
    ("a run that another process is training", lambda t, c: (["train", "--resume", c[3]], {}),
     4, "in use by process"),
]


def normalise(line, tmp, root_tmp, standin, s3):
  line = line.replace(str(tmp), "<tmp>").replace(str(root_tmp), "<tmp>")
  line = line.replace(ROOT + "/", "").replace(standin.url, "<toloka>")
  line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line)
  line = line.replace(s3[0], "<s3>")
  line = re.sub(r"process \d+", "process <pid>", line)
  line = re.sub(r"kill \d+", "kill <pid>", line)
  return re.sub(r"-\d{8}-\d{6}", "-<stamp>", line)


def test_bad_inputs_are_one_line_each(tmp_path, standin, s3_server, monkeypatch, capsys):
  port = busy_port()
  busy, holder = held_run(str(tmp_path / "held"))
  rows = []
  try:
    for i, (what, make, status, needle) in enumerate(CASES):
      case = tmp_path / f"case{i}"
      out = case / "out"
      out.mkdir(parents=True)
      argv, env = make(str(case), (standin, s3_server, port, busy))
      if argv[0] == "train" and "--resume" not in argv and "--out" not in argv:
        argv = argv + ["--out", str(out)]
      with monkeypatch.context() as m:
        m.setenv("TOLOKA_TOKEN", FAKE_TOLOKA_TOKEN)
        for key, value in FAKE_AWS.items():
          m.setenv(key, value)
        for key, value in env.items():
          if value is None:
            m.delenv(key, raising=False)
          else:
            m.setenv(key, value)
        code = cli.main(argv)
      got = capsys.readouterr()
      lines = got.err.strip().splitlines()
      assert code == status, (what, code, got.err)
      assert len(lines) == 1, (what, got.err)
      assert "Traceback" not in got.err + got.out, what
      assert needle in lines[0], (what, lines[0])
      assert not os.listdir(out), (what, os.listdir(out))          # nothing created
      rows.append((what, code, normalise(lines[0], case, tmp_path, standin, s3_server)))
  finally:
    holder.kill()
    holder.wait()
    port.close()
  table = ["# Bad inputs and what `rlhp-jax` says", "",
           "Every row is produced by `tests/test_bad_inputs.py`, which runs each input through the "
           "CLI and checks: exactly one line on stderr, no traceback, nothing created, and the exit "
           "status (2: bad input; 4: the run directory is in use). Paths are shortened to `<tmp>`. "
           "Regenerate with `RLHP_JAX_WRITE_DOCS=1 .venv/bin/python -m pytest "
           "tests/test_bad_inputs.py`.", "",
           "| bad input | exit | message |", "|---|---|---|"]
  table += [f"| {what} | {code} | `{line.replace('|', '/')}` |" for what, code, line in rows]
  text = "\n".join(table) + "\n"
  if os.environ.get("RLHP_JAX_WRITE_DOCS"):
    write(DOC, text)
  assert os.path.exists(DOC) and open(DOC).read() == text, (
      "docs/bad_inputs.md is stale; regenerate it with RLHP_JAX_WRITE_DOCS=1")


def test_no_warp_notice_and_one_line_from_a_real_process(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "rlhp_jax.cli", "train", EXP, "--out",
                         str(tmp_path), "--ppo.num-envs", "0"], capture_output=True, text=True,
                        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
  assert proc.returncode == 2
  assert "warp" not in proc.stdout + proc.stderr
  assert proc.stderr.strip().splitlines() == [
      "rlhp-jax: config error: ppo.num_envs: must be a positive integer, got 0"]
  assert not os.listdir(tmp_path)


def test_config_checks_run_when_the_config_is_built():
  """The checks that need several sections (label budget against the run's iterations, the
  external driver's needs) fail where the config is made, not in a driver."""
  import dataclasses
  from rlhp_jax.config_errors import ConfigError
  cfg = experiment.load_experiment(SYN_EXP)
  assert cfg.num_iterations > cfg.warmup_iterations > 0
  with pytest.raises(ConfigError, match="^run.num_seeds: "):
    dataclasses.replace(cfg, labels="external", run=dataclasses.replace(cfg.run, num_seeds=2))
  with pytest.raises(ConfigError, match="^labels: 'human' needs reward_source"):
    dataclasses.replace(cfg, labels="human", reward_source="true")
  with pytest.raises(ConfigError, match="^prefs.pairs_per_iteration: collecting the initial"):
    dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, total_env_steps=1000,
                                                     iterations_per_call=1))
  from rlhp_jax.preferences import PreferenceConfig
  for margin, says in ((0.5, "must be below 0.5"), (-0.1, "must be a number >= 0")):
    with pytest.raises(ConfigError, match=f"^prefs.even_margin: {says}"):
      PreferenceConfig(even_margin=margin)
  for until in (0, 1.5, True):
    with pytest.raises(ConfigError, match="^prefs.labels_until: must be a share of the run"):
      PreferenceConfig(labels_until=until)
  for shortest in (0, 11, 2.5, True):
    with pytest.raises(ConfigError, match=r"^prefs.min_fragment_length: must be None \(every "
                                          r"fragment prefs.fragment_length long\) or a whole "
                                          r"number of steps in 1 .. prefs.fragment_length \(10\)"):
      PreferenceConfig(fragment_length=10, min_fragment_length=shortest)
  assert PreferenceConfig(fragment_length=10, min_fragment_length=10).min_length == 10
  assert PreferenceConfig(fragment_length=10).min_length == 10
  varying = dataclasses.replace(cfg.prefs, min_fragment_length=cfg.prefs.fragment_length - 1)
  assert dataclasses.replace(cfg, labels="external", prefs=varying).prefs.min_length < 10
  for crowd in ("human", "toloka"):
    with pytest.raises(ConfigError, match="^prefs.min_fragment_length: fragments of varying "
                                          f"length are for synthetic labels \\('{crowd}'"):
      dataclasses.replace(cfg, labels=crowd, prefs=varying)
  with pytest.raises(ConfigError, match="^run.eval_action: must be one of 'clip_mean', "
                                        "'mean_applied', got 'median'"):
    dataclasses.replace(cfg.run, eval_action="median")
