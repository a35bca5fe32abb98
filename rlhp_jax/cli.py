"""``rlhp-jax``: the command line.

    rlhp-jax train experiments/hopper_synthetic.py [--section.field value ...]
    rlhp-jax train --resume runs/hopper_synthetic-20261123-101500
    rlhp-jax render RUN_DIR
    rlhp-jax toloka setup experiments/hopper_backflip_toloka.py

Any config field can be overridden with ``--section.field value`` (parsed by tyro). A bad field
prints one line naming it and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys

from rlhp_jax import validation


def _override(cfg, args):
  """Applies ``--section.field value`` overrides with tyro on top of the experiment's CONFIG."""
  if not args:
    return cfg
  import tyro
  try:
    return tyro.cli(type(cfg), default=cfg, args=args, prog="rlhp-jax train EXPERIMENT",
                    console_outputs=False)
  except SystemExit as e:
    unknown = " ".join(a for a in args if a.startswith("--"))
    raise validation.ConfigError(
        f"overrides: could not parse {unknown!r}; use --section.field value with fields from "
        f"the experiment (e.g. --run.total-env-steps 100000); --help lists them") from e


def make_run_dir(cfg, out_dir: str | None = None) -> str:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  path = os.path.join(out_dir or cfg.run.out_dir, f"{cfg.name}-{stamp}")
  os.makedirs(path, exist_ok=False)
  return path


def cmd_train(ns, rest) -> int:
  from rlhp_jax import experiment
  if ns.resume:
    run_dir = ns.resume
    config_path = os.path.join(run_dir, "config.json")
    validation.require(os.path.exists(config_path), "--resume",
                       f"{run_dir!r} has no config.json; pass a run directory made by 'train'")
    cfg = experiment.load_experiment(config_path)
    validation.require(not rest, "--resume", "takes no overrides: the run keeps its config")
  else:
    validation.require(ns.experiment is not None, "experiment",
                       "missing; pass experiments/<name>.py (or --resume RUN_DIR)")
    if "--help" in rest or "-h" in rest:
      import tyro
      cfg = experiment.load_experiment(ns.experiment)
      tyro.cli(type(cfg), default=cfg, args=["--help"], prog="rlhp-jax train EXPERIMENT")
      return 0
    cfg = _override(experiment.load_experiment(ns.experiment), rest)
    check_label_source(cfg)
    run_dir = make_run_dir(cfg, ns.out)
    experiment.save(cfg, os.path.join(run_dir, "config.json"))
  print(f"run directory: {run_dir}", flush=True)
  from rlhp_jax import loop, report
  if cfg.external_labels:
    validation.require(cfg.reward_source == "preferences", "labels",
                       f"{cfg.labels!r} needs reward_source='preferences'")
    validation.require(cfg.run.num_seeds == 1, "run.num_seeds",
                       "the external driver runs one seed; set --run.num-seeds 1")
    gatherer = make_gatherer(cfg, run_dir)
    summary = loop.train_external(cfg, run_dir, gatherer, resume=bool(ns.resume))
  else:
    summary = loop.train(cfg, run_dir, teacher_configs=cfg.teacher_sweep(),
                         resume=bool(ns.resume))
  with open(os.path.join(run_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  if len(summary["teachers"]) > 1:
    print(report.teacher_table(summary))
    report.plot_teachers(summary, os.path.join(run_dir, "teachers.png"))
  print(json.dumps(summary, indent=2))
  return 0


def check_label_source(cfg) -> None:
  """What a crowd run needs (ids, bucket, token) is checked before a run directory exists."""
  if cfg.labels == "toloka":
    from rlhp_jax.crowd.toloka_gatherer import token_from_env
    cfg.toloka.check_ready()
    cfg.storage.check_ready()
    token_from_env()


def make_gatherer(cfg, run_dir):
  """The label source of an external run: crowd workers, you on a web page, or the synthetic
  teacher behind the same interface."""
  if cfg.labels == "toloka":
    from rlhp_jax.crowd.toloka_gatherer import TolokaGatherer
    return TolokaGatherer(cfg, run_dir)
  if cfg.labels == "human":
    from rlhp_jax.human.gatherer import HumanGatherer
    return HumanGatherer(cfg, run_dir)
  from rlhp_jax import loop
  return loop.SyntheticGatherer(cfg.teacher)


def _crowd_errors():
  """Errors of remote labelling services that are reported in one line, not a traceback."""
  from rlhp_jax.crowd.retry import RetriesExhausted
  from rlhp_jax.crowd.toloka_gatherer import CrowdError
  return (CrowdError, RetriesExhausted)


def cmd_render(ns) -> int:
  """Renders a run's saved evaluation episode (eval_qpos.npy) to policy.mp4, e.g. for runs made
  on a machine without a GL backend."""
  import numpy as np
  from rlhp_jax import experiment, loop
  cfg = experiment.load_experiment(os.path.join(ns.run_dir, "config.json"))
  qpos_path = os.path.join(ns.run_dir, "eval_qpos.npy")
  validation.require(os.path.exists(qpos_path), "run_dir", f"{qpos_path} is missing")
  path = loop.write_policy_video(cfg, ns.run_dir, np.load(qpos_path))
  print(path or "no video written")
  return 0 if path else 1


def cmd_toloka(ns, rest) -> int:
  """``toloka setup``: creates the project, training and base pool from the experiment config
  and prints their ids (the token comes from TOLOKA_TOKEN)."""
  from rlhp_jax import experiment
  from rlhp_jax.crowd import storage as clip_storage
  from rlhp_jax.crowd import toloka_gatherer, toloka_setup
  cfg = _override(experiment.load_experiment(ns.experiment), rest)
  cfg.storage.check_ready()
  client = toloka_gatherer.make_client(cfg.toloka.url, toloka_gatherer.token_from_env())
  run_dir = make_run_dir(dataclasses.replace(cfg, name=f"{cfg.name}-toloka-setup"), ns.out)
  storage = clip_storage.make_storage(cfg.storage, run_dir, os.path.basename(run_dir))
  ids = toloka_setup.setup(cfg, run_dir, client, storage,
                           num_training_tasks=ns.training_tasks)
  with open(os.path.join(run_dir, "toloka_ids.json"), "w") as f:
    json.dump(ids, f, indent=2)
  print("put these in the experiment config (or pass them as overrides):")
  for key, value in ids.items():
    print(f"  --toloka.{key.replace('_', '-')} {value}")
  return 0


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
  ns, rest = parser.parse_known_args(argv)
  try:
    if ns.command == "train":
      return cmd_train(ns, rest)
    if ns.command == "render":
      return cmd_render(ns)
    if ns.command == "toloka":
      return cmd_toloka(ns, rest)
  except validation.ConfigError as e:
    print(f"rlhp-jax: config error: {e}", file=sys.stderr)
    return 2
  except _crowd_errors() as e:
    print(f"rlhp-jax: {e}", file=sys.stderr)
    return 3
  except KeyboardInterrupt:
    print("interrupted (resume with: rlhp-jax train --resume RUN_DIR)", file=sys.stderr)
    return 130
  return 1


if __name__ == "__main__":
  sys.exit(main())
