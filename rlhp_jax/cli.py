"""``rlhp-jax``: the command line.

    rlhp-jax train experiments/hopper_synthetic.py [--section.field value ...]
    rlhp-jax train --resume runs/hopper_synthetic-20261123-101500
    rlhp-jax render RUN_DIR
    rlhp-jax toloka setup experiments/hopper_backflip_toloka.py
    rlhp-jax labels drop-iteration RUN_DIR ITERATION

Any config field can be overridden with ``--section.field value`` (parsed by tyro).

Exit status: 0 done; 2 bad input (a config field, an experiment or run file, a credential: one
line naming it and the fix, and nothing is created); 3 a remote service or the disk failed in a
way retrying did not fix (one line; the run can be resumed); 4 the run directory is in use by
another process; 130 interrupted. A process that trains or labels in a run directory holds its
lock (``run_lock``) from before its first write.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import json
import logging
import os
import sys

from rlhp_jax import config_errors, run_lock

log = logging.getLogger("rlhp_jax.cli")  # also when run as __main__ (python -m)


class _Lines(logging.Handler):
  """The package's one output path: message-only lines, notices to stdout, warnings and errors
  to stderr (the streams are looked up per line, so redirecting them works). A record with
  ``redraw`` (a progress line that changes in place) is redrawn on a terminal."""

  def __init__(self):
    super().__init__(logging.INFO)
    self._open_redraw = None

  def emit(self, record):
    try:
      stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
      line = self.format(record)
      if getattr(record, "redraw", False) and stream.isatty():
        stream.write(f"\r{line}\x1b[K")
        self._open_redraw = stream
      else:
        if self._open_redraw is not None:
          self._open_redraw.write("\n")
          self._open_redraw = None
        stream.write(line + "\n")
      stream.flush()
    except Exception:  # noqa: BLE001 - logging must never stop a run
      self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
  """One handler on the ``rlhp_jax`` logger (replacing an earlier one) that prints each
  message as it is."""
  logger = logging.getLogger("rlhp_jax")
  for handler in [h for h in logger.handlers if isinstance(h, _Lines)]:
    logger.removeHandler(handler)
  logger.addHandler(_Lines())
  logger.setLevel(level)
  if not logging.root.handlers:
    # absl (imported by orbax) calls logging.basicConfig() on its first log line when the root
    # logger has no handler, which would print every package line a second time on stderr.
    logging.root.addHandler(logging.NullHandler())


def make_run_dir(cfg, out_dir: str | None = None) -> str:
  """A new run directory under ``--out`` (or ``run.out_dir``), locked for this process before
  anything is written into it."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  parent = out_dir or cfg.run.out_dir
  path = os.path.join(parent, f"{cfg.name}-{stamp}")
  for n in range(2, 100):
    if not os.path.exists(path):
      break
    path = os.path.join(parent, f"{cfg.name}-{stamp}-{n}")
  try:
    os.makedirs(path, exist_ok=False)
  except OSError as e:
    field = "--out" if out_dir else "run.out_dir"
    raise config_errors.ConfigError(f"{field}: cannot create {path} ({e.strerror or e}); pass a "
                                 "folder you can write to with --out DIR") from None
  run_lock.lock(path)
  return path


def cmd_train(ns, rest) -> int:
  from rlhp_jax import experiment
  if ns.resume:
    run_dir = ns.resume
    config_path = os.path.join(run_dir, "config.json")
    config_errors.require(os.path.isfile(config_path), "--resume",
                       f"{run_dir!r} has no config.json; pass a run directory made by 'train'")
    config_errors.require(not rest, "--resume", "takes no overrides: the run keeps its config")
    run_lock.lock(run_dir)
    cfg = experiment.load_experiment(config_path)
    check_label_source(cfg)
    use_compile_cache()
  else:
    config_errors.require(ns.experiment is not None, "experiment",
                       "missing; pass experiments/<name>.py (or --resume RUN_DIR)")
    if "--help" in rest or "-h" in rest:
      import tyro
      cfg = experiment.load_experiment(ns.experiment)
      tyro.cli(type(cfg), default=cfg, args=["--help"], prog="rlhp-jax train EXPERIMENT")
      return 0
    cfg = experiment.override(experiment.load_experiment(ns.experiment), rest)
    check_label_source(cfg)
    use_compile_cache()
    run_dir = make_run_dir(cfg, ns.out)
    experiment.save(cfg, os.path.join(run_dir, "config.json"))
  log.info(f"run directory: {run_dir}")
  from rlhp_jax import loop, report
  if cfg.external_labels:
    gatherer = make_gatherer(cfg, run_dir)
    summary = loop.train_external(cfg, run_dir, gatherer, resume=bool(ns.resume))
  else:
    summary = loop.train(cfg, run_dir, teacher_configs=cfg.teacher_sweep(),
                         resume=bool(ns.resume))
  with open(os.path.join(run_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  if len(summary["teachers"]) > 1:
    log.info(report.teacher_table(summary))
    report.plot_teachers(summary, os.path.join(run_dir, "teachers.png"))
  log.info(json.dumps(summary, indent=2))
  return 0


def use_compile_cache() -> None:
  """XLA's persistent compilation cache (``compile_cache``), checked before a run directory
  exists: a folder that cannot be written is a config error."""
  from rlhp_jax import compile_cache
  path = compile_cache.enable()
  log.info(f"compile cache: {path or 'off'} (set {compile_cache.ENV}=off to compile every run)")


def check_label_source(cfg) -> None:
  """What a crowd or human run needs beyond its config fields (ids, token, S3 credentials and
  bucket, a writable clip folder, an address to listen on) is checked before a run directory
  exists: a bad one is a config error, and nothing is made. (The config's own fields were
  checked when it was built.)"""
  if cfg.labels == "toloka":
    from rlhp_jax.crowd import storage as clip_storage
    from rlhp_jax.crowd import toloka_gatherer
    from rlhp_jax.crowd.retry import CrowdError
    cfg.toloka.check_ready()
    cfg.storage.check_ready()
    token = toloka_gatherer.token_from_env()
    if cfg.storage.kind == "local" and cfg.storage.local_dir:
      _check_writable_dir(cfg.storage.local_dir, "storage.local_dir")
    try:
      if cfg.storage.kind == "s3":
        clip_storage.S3Storage(cfg.storage, "preflight").check()
      client = toloka_gatherer.make_client(cfg.toloka.url, token)
      toloka_gatherer.preflight(client, cfg.toloka)
    except CrowdError as e:
      raise config_errors.ConfigError(str(e)) from None
  elif cfg.labels == "human":
    _check_listen(cfg.human.host, cfg.human.port)


def _check_listen(host: str, port: int) -> None:
  """The labelling page's server can listen on ``host:port`` (port 0: any free port, so only
  the host is tried). Binds a probe socket and closes it; creates nothing."""
  import errno
  import socket
  family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as human/server.py chooses
  with socket.socket(family, socket.SOCK_STREAM) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds
    try:
      probe.bind((host, port))
    except socket.gaierror as e:
      raise config_errors.ConfigError(
          f"human.host: cannot resolve {host!r} ({e.strerror or e}); pass an address of this "
          "machine with --human.host, e.g. 127.0.0.1") from None
    except OSError as e:
      if port and e.errno != errno.EADDRNOTAVAIL:
        raise config_errors.ConfigError(
            f"human.port: cannot listen on {host}:{port} ({e.strerror or e}); pass another "
            "with --human.port, or 0 for any free port") from None
      raise config_errors.ConfigError(
          f"human.host: cannot listen on {host} ({e.strerror or e}); pass an address of this "
          "machine with --human.host, e.g. 127.0.0.1") from None


def _check_writable_dir(path: str, field: str) -> None:
  """``path`` is a folder this process can write to, or can be made under one (nothing is
  created here: the nearest existing ancestor is checked)."""
  probe = os.path.abspath(path)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  config_errors.require(os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK), field,
                        f"cannot write clips under {path!r} ({probe} is not a folder you can "
                        "write to); pass another folder, or leave it empty for <run_dir>/clips")


def make_gatherer(cfg, run_dir):
  """The label source of an external run: crowd workers, you on a web page, or the synthetic
  teacher behind the same interface."""
  if cfg.labels == "toloka":
    from rlhp_jax.crowd.toloka_gatherer import TolokaGatherer
    return TolokaGatherer(cfg.toloka, cfg.storage, cfg.clips, run_dir, env_dt=cfg.env.dt)
  if cfg.labels == "human":
    from rlhp_jax.human.gatherer import HumanGatherer
    return HumanGatherer(cfg.human, cfg.clips, run_dir, instruction=cfg.instruction_text,
                         env_dt=cfg.env.dt)
  from rlhp_jax import loop
  return loop.SyntheticGatherer(cfg.teacher)


def clear_cut_pairs(cfg, num_pairs: int, seed: int = 0):
  """Pairs for Toloka's training tasks, built with the core: fragments from the initial random
  policy whose oracle returns differ the most. Returns one run's ``Query`` (numpy leaves) with
  those ``num_pairs`` pairs masked."""
  import jax
  import numpy as np

  from rlhp_jax import core
  small = dataclasses.replace(
      cfg, labels="external",
      ppo=dataclasses.replace(cfg.ppo, num_envs=min(cfg.ppo.num_envs, 32)),
      prefs=dataclasses.replace(cfg.prefs, selection="random", pairs_per_iteration=max(
          4 * num_pairs, cfg.prefs.pairs_per_iteration)),
      run=dataclasses.replace(cfg.run, num_seeds=1))
  system = core.RLHP(small)
  state = jax.jit(system.init)(jax.random.PRNGKey(seed))
  _, query, _ = jax.jit(system.collect)(state)
  query = jax.tree.map(np.asarray, jax.device_get(query))
  returns = query.pairs.true_reward.sum(-1)
  gap = np.abs(returns[:, 0] - returns[:, 1])
  mask = np.zeros(len(gap), bool)
  mask[np.argsort(-gap)[:num_pairs]] = True
  return query.replace(mask=mask)


def _service_errors():
  """Errors of remote services and the disk that are reported in one line, not a traceback."""
  from rlhp_jax.checkpoint import CheckpointError
  from rlhp_jax.crowd.retry import CrowdError, RetriesExhausted
  from rlhp_jax.label_store import LabelStoreError, PairMismatchError
  return (CrowdError, RetriesExhausted, LabelStoreError, CheckpointError, PairMismatchError)


def cmd_render(ns) -> int:
  """Renders a run's saved evaluation episode (eval_qpos.npy) to policy.mp4, e.g. for runs made
  on a machine without a GL backend."""
  import numpy as np
  from rlhp_jax import experiment, summary
  config_path = os.path.join(ns.run_dir, "config.json")
  config_errors.require(os.path.isfile(config_path), "run_dir",
                     f"{ns.run_dir!r} has no config.json; pass a run directory made by 'train'")
  cfg = experiment.load_experiment(config_path)
  qpos_path = os.path.join(ns.run_dir, "eval_qpos.npy")
  config_errors.require(os.path.exists(qpos_path), "run_dir", f"{qpos_path} is missing")
  path = summary.write_policy_video(cfg, ns.run_dir, np.load(qpos_path))
  log.info(path or "no video written")
  return 0 if path else 1


def cmd_toloka(ns, rest) -> int:
  """``toloka setup``: creates the project, training and base pool from the experiment config
  and prints their ids (the token comes from TOLOKA_TOKEN)."""
  from rlhp_jax import experiment
  from rlhp_jax.crowd import storage as clip_storage
  from rlhp_jax.crowd import toloka_gatherer, toloka_setup
  cfg = experiment.override(experiment.load_experiment(ns.experiment), rest)
  cfg.storage.check_ready()
  client = toloka_gatherer.make_client(cfg.toloka.url, toloka_gatherer.token_from_env())
  if cfg.storage.kind == "s3":
    from rlhp_jax.crowd.retry import CrowdError
    try:
      clip_storage.S3Storage(cfg.storage, "preflight").check()
    except CrowdError as e:
      raise config_errors.ConfigError(str(e)) from None
  run_dir = make_run_dir(dataclasses.replace(cfg, name=f"{cfg.name}-toloka-setup"), ns.out)
  storage = clip_storage.make_storage(cfg.storage, run_dir, os.path.basename(run_dir))
  training = clear_cut_pairs(cfg, ns.training_tasks)
  ids = toloka_setup.setup(cfg.toloka, cfg.instruction_text, training, cfg.clips, cfg.env.dt,
                           run_dir, client, storage)
  with open(os.path.join(run_dir, "toloka_ids.json"), "w") as f:
    json.dump(ids, f, indent=2)
  log.info("put these in the experiment config (or pass them as overrides):")
  for key, value in ids.items():
    log.info(f"  --toloka.{key.replace('_', '-')} {value}")
  return 0


def cmd_labels(ns) -> int:
  """``labels drop-iteration RUN_DIR K``: the run trains on none of iteration K's pairs (after a
  resume recomputed other pairs than the ones asked); closes its open pools on the next
  resume. Nothing already stored is deleted."""
  from rlhp_jax import label_store
  config_errors.require(os.path.isfile(os.path.join(ns.run_dir, "config.json")), "run_dir",
                     f"{ns.run_dir!r} has no config.json; pass a run directory made by 'train'")
  config_errors.require(ns.iteration >= 0, "iteration", f"must be >= 0, got {ns.iteration}")
  run_lock.lock(ns.run_dir)
  store = label_store.LabelStore(ns.run_dir)
  if store.last_event("iteration_dropped", iteration=ns.iteration) is None:
    store.add_event("iteration_dropped", iteration=ns.iteration)
  log.info(f"iteration {ns.iteration} of {ns.run_dir} dropped; resume with: rlhp-jax train "
           f"--resume {ns.run_dir}")
  return 0


@contextlib.contextmanager
def _quiet_mjx_import():
  """MJX's import prints "Failed to import warp" (a GPU backend this project does not use) on
  stdout; import it once with that notice swallowed, so later imports are silent."""
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      import mujoco.mjx  # noqa: F401
  finally:
    for line in out.getvalue().splitlines():
      if line.strip() and "import warp" not in line and "import mujoco_warp" not in line:
        log.info(line)
  yield


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="rlhp-jax", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="run an experiment config", add_help=False)
  train.add_argument("experiment", nargs="?", default=None,
                     help="experiments/<name>.py or a run's config.json")
  train.add_argument("--out", default=None, help="parent folder for the run directory")
  train.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help="continue a killed run from its last checkpoint")
  render = sub.add_parser("render", help="render a run's final evaluation episode to mp4")
  render.add_argument("run_dir")
  toloka = sub.add_parser("toloka", help="Toloka project setup (crowd labels)")
  toloka.add_argument("action", choices=["setup"])
  toloka.add_argument("experiment", help="experiments/<name>.py with the toloka settings")
  toloka.add_argument("--out", default=None, help="parent folder for the setup's clips")
  toloka.add_argument("--training-tasks", type=int, default=10,
                      help="training tasks (clear-cut pairs with a known answer)")
  labels = sub.add_parser("labels", help="a run's label store")
  labels.add_argument("action", choices=["drop-iteration"])
  labels.add_argument("run_dir")
  labels.add_argument("iteration", type=int)
  ns, rest = parser.parse_known_args(argv)
  configure_logging()
  if ns.command in ("render", "labels") and rest:
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  try:
    with _quiet_mjx_import():
      if ns.command == "train":
        return cmd_train(ns, rest)
      if ns.command == "render":
        return cmd_render(ns)
      if ns.command == "toloka":
        return cmd_toloka(ns, rest)
      if ns.command == "labels":
        return cmd_labels(ns)
  except config_errors.ConfigError as e:
    log.error(f"rlhp-jax: config error: {e}")
    return 2
  except run_lock.RunLocked as e:
    log.error(f"rlhp-jax: {e}")
    return 4
  except _service_errors() as e:
    log.error(f"rlhp-jax: {e}")
    return 3
  except KeyboardInterrupt:
    log.error("interrupted (resume with: rlhp-jax train --resume RUN_DIR)")
    return 130
  return 1


if __name__ == "__main__":
  sys.exit(main())
