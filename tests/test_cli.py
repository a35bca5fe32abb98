"""CLI: bad config fields give one line naming the field; configs round-trip through JSON."""

import json
import os

import pytest

from rlhp_jax import cli, config_errors, experiment
from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.ppo import PPOConfig

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_ppo_true_reward.py")


def run_cli(capsys, *args):
  code = cli.main(list(args))
  return code, capsys.readouterr()


@pytest.mark.parametrize("args,field", [
    (["--ppo.num-envs", "0"], "ppo.num_envs"),
    (["--ppo.num-minibatches", "7"], "ppo.num_minibatches"),
    (["--env.mode", "sideways"], "env.mode"),
    (["--ppo.discount", "1.5"], "ppo.discount"),
    (["--run.total-env-steps", "-5"], "run.total_env_steps"),
])
def test_bad_field_is_one_line_naming_it(capsys, tmp_path, args, field):
  code, out = run_cli(capsys, "train", EXP, "--out", str(tmp_path), *args)
  assert code == 2
  lines = out.err.strip().splitlines()
  assert len(lines) == 1, out.err
  assert field in lines[0] or field.split(".")[-1].replace("_", "-") in lines[0], lines[0]
  assert "Traceback" not in out.err + out.out
  assert not os.listdir(tmp_path)  # nothing created for a bad config


def test_unknown_override_is_one_line(capsys, tmp_path):
  code, out = run_cli(capsys, "train", EXP, "--out", str(tmp_path), "--ppo.num-env", "8")
  assert code == 2
  assert len(out.err.strip().splitlines()) == 1 and "--ppo.num-env" in out.err


def test_missing_experiment_file(capsys):
  code, out = run_cli(capsys, "train", "experiments/nope.py")
  assert code == 2 and "nope.py" in out.err and len(out.err.strip().splitlines()) == 1


def test_config_json_round_trip_and_unknown_field(tmp_path):
  cfg = experiment.load_experiment(EXP)
  path = tmp_path / "config.json"
  experiment.save(cfg, str(path))
  assert experiment.load_experiment(str(path)) == cfg
  data = json.loads(path.read_text())
  data["ppo"]["learning_rte"] = 1e-3
  path.write_text(json.dumps(data))
  with pytest.raises(config_errors.ConfigError, match=r"ppo\.learning_rte: unknown field; did you "
                                                   r"mean 'ppo\.learning_rate'"):
    experiment.load_experiment(str(path))


def test_config_validation_messages():
  with pytest.raises(config_errors.ConfigError, match=r"^env\.solver_iterations: must be a positive"):
    HopperConfig(solver_iterations=0)
  with pytest.raises(config_errors.ConfigError, match=r"^ppo\.policy_hidden"):
    PPOConfig(policy_hidden=())
