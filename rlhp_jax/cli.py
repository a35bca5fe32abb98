"""``rlhp-jax``: the command line.

    rlhp-jax train experiments/hopper_ppo_true_reward.py [--run.total-env-steps 1000000 ...]

Any config field can be overridden with ``--section.field value`` (parsed by tyro). A bad field
prints one line naming it and exits with status 2.
"""

from __future__ import annotations

import argparse
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
  if "--help" in rest or "-h" in rest:
    import tyro
    cfg = experiment.load_experiment(ns.experiment)
    tyro.cli(type(cfg), default=cfg, args=["--help"], prog="rlhp-jax train EXPERIMENT")
    return 0
  cfg = _override(experiment.load_experiment(ns.experiment), rest)
  run_dir = make_run_dir(cfg, ns.out)
  experiment.save(cfg, os.path.join(run_dir, "config.json"))
  print(f"run directory: {run_dir}", flush=True)
  from rlhp_jax import rl_train
  summary = rl_train.train(cfg, run_dir)
  with open(os.path.join(run_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2))
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="rlhp-jax", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="run an experiment config", add_help=False)
  train.add_argument("experiment", help="experiments/<name>.py or a run's config.json")
  train.add_argument("--out", default=None, help="parent folder for the run directory")
  ns, rest = parser.parse_known_args(argv)
  try:
    if ns.command == "train":
      return cmd_train(ns, rest)
  except validation.ConfigError as e:
    print(f"rlhp-jax: config error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  return 1


if __name__ == "__main__":
  sys.exit(main())
