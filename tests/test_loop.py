"""The RLHP loop end to end at a tiny size: the CLI run leaves its files, the synthetic and
external drivers give the same labels, a killed run resumes bit-for-bit in its labels, and
adding labels never retraces ``learn``, and a run without a run directory reports through its
``progress_fn``."""

import dataclasses
import glob
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhp_jax import checkpoint, cli, config_errors, core, experiment, layout, loop
from support import tiny

ROOT = os.path.dirname(os.path.dirname(__file__))
EXP = os.path.join(ROOT, "experiments", "hopper_synthetic.py")
# with an archive of earlier fragments and fragments of 5-8 steps, so the drivers' agreement
# and the resume cover them too
TINY = tiny.args(1024, True, "--prefs.archive-size", "8", "--prefs.min-fragment-length", "5")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("runs")
  assert cli.main(["train", EXP, "--out", str(out), *TINY]) == 0
  (run_dir,) = glob.glob(str(out / "hopper_synthetic-*"))
  return run_dir


@pytest.fixture(scope="module")
def tiny_cfg(cli_run):
  return experiment.load_experiment(os.path.join(cli_run, "config.json"))


def final_buffer(run_dir, cfg):
  """The first run's preference buffer from a run's last checkpoint (both drivers keep a
  stack of runs; the external driver's has one)."""
  system = core.RLHP(cfg)
  like = jax.eval_shape(jax.vmap(system.init), jnp.zeros((1, 2), jnp.uint32))
  like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like)
  _, state = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints")).restore(like)
  buf = jax.tree.map(lambda x: x[0], state.buffer)
  n = int(buf.count)
  return {"label": np.asarray(buf.label)[:n], "obs": np.asarray(buf.obs)[:n],
          "counted": np.asarray(buf.counted)[:n],
          "oracle_return": np.asarray(buf.oracle_return)[:n],
          "is_val": np.asarray(buf.is_val)[:n], "requested": int(np.asarray(state.requested).ravel()[0])}


def test_cli_run_leaves_its_files(cli_run):
  for name in ("config.json", "metrics.jsonl", "learning_curve.png", "summary.json",
               "eval_qpos.npy"):
    assert os.path.getsize(os.path.join(cli_run, name)) > 0, name
  summary = json.load(open(os.path.join(cli_run, "summary.json")))
  assert summary["labels_per_run"] == [24] and summary["env_steps"] == 1024
  assert summary["nonfinite_runs"] == []
  # labels of 1/2 (pairs the teacher scored alike) are counted, as stored and as logged
  stored = final_buffer(cli_run, experiment.load_experiment(os.path.join(cli_run, "config.json")))
  assert summary["equal_labels_per_run"] == [int(np.sum(stored["label"] == 0.5))]
  rows = [json.loads(line) for line in open(os.path.join(cli_run, "metrics.jsonl"))]
  logged = [r["prefs/equal_labels"] for r in rows if "prefs/equal_labels" in r]
  assert logged and logged[-1] == summary["equal_labels_per_run"]
  # fragments of 5-8 steps (prefs.min_fragment_length): each holds its first steps, and the
  # teacher's exact label follows the oracle's return of the steps held, as stored
  held = stored["counted"].sum(-1)
  np.testing.assert_array_equal(stored["counted"], np.arange(8) < held[..., None])
  assert held.min() >= 5 and held.max() <= 8 and len(np.unique(held)) > 1
  r = stored["oracle_return"]
  np.testing.assert_array_equal(stored["label"], np.where(r[:, 0] > r[:, 1], 1.0,
                                                          np.where(r[:, 0] < r[:, 1], 0.0, 0.5)))
  import jax
  software = summary["software"]    # runs are only reproducible under the same packages
  assert software["versions"]["jax"] == jax.__version__ and software["backend"] == "cpu"
  assert set(software["versions"]) == {"jax", "jaxlib", "mujoco", "mujoco-mjx", "flax",
                                       "optax", "numpy"}
  from rlhp_jax import summary as summary_module     # ... and on the same kind of CPU
  assert software["cpu"] == summary_module.host_cpu()
  assert all(f in summary_module.CPU_FEATURES or f.startswith(summary_module.CPU_FEATURE_PREFIXES)
             for f in software["cpu"].get("features", []))
  all_rows = [json.loads(l) for l in open(os.path.join(cli_run, "metrics.jsonl"))]
  rows = [r for r in all_rows if "steps_per_s" in r]           # one per training chunk
  assert len(rows) == 4 and rows[-1]["prefs/requested"] == [24]
  assert rows[0]["prefs/warmup"] == [1.0] and rows[-1]["prefs/warmup"] == [0.0]
  for key in ("reward/true_corr", "reward/val_nll", "train/true_reward", "ppo/policy_loss"):
    assert key in rows[-1]
  # the share of candidates every member called a tie (prefs.even_margin's test) is a fraction
  assert all(0.0 <= v <= 1.0 for r in rows for v in r["prefs/known_ties"])
  # from the second iteration on, queries pair rollout fragments with archived ones
  archived = [v for r in rows for v in r["prefs/archived_pairs"]]
  assert all(0.0 <= v <= 1.0 for v in archived) and max(archived) > 0
  # the final evaluation is the last row, with every return the summary reports
  final = all_rows[-1]
  assert final.get("final") and final["env_steps"] == 1024
  for key, name in (("eval/return", "eval_return_per_run"),
                    ("eval/seals_return", "eval_seals_return_per_run"),
                    ("eval/gym_return", "eval_gym_return_per_run"),
                    ("eval/healthy_fraction", "eval_healthy_fraction_per_run"),
                    ("eval/forward_speed", "eval_forward_speed_per_run"),
                    ("eval/gym_length", "eval_gym_length_per_run"),
                    ("eval/gym_length_min", "eval_gym_length_min_per_run")):
    np.testing.assert_allclose(final[key], summary[name], rtol=1e-6)
  # Gym's termination step: at most the episode's length, and the worst episode's is earliest
  assert 1 <= summary["eval_gym_length_min_per_run"][0] <= \
      summary["eval_gym_length_per_run"][0] <= summary["eval_episode_length"]
  assert 0 <= summary["eval_healthy_fraction_min_per_run"][0] <= \
      summary["eval_healthy_fraction_per_run"][0] <= 1
  assert summary["eval_action"] == "clip_mean"     # the rule the figures were evaluated by
  assert all(r["time"] >= all_rows[0]["time"] for r in all_rows)
  if summary.get("video"):
    assert os.path.getsize(summary["video"]) > 1000
    import mediapy
    assert mediapy.read_image(os.path.join(cli_run, "policy_frames.png")).shape == (
        3 * 48 // 2, 6 * 64 // 2, 3)


def test_synthetic_and_external_drivers_give_the_same_labels(cli_run, tiny_cfg, tmp_path):
  ext_dir = str(tmp_path / "external")
  os.makedirs(ext_dir)
  cfg = dataclasses.replace(tiny_cfg, labels="external",
                            run=dataclasses.replace(tiny_cfg.run, video=False))
  loop.train_external(cfg, ext_dir, loop.SyntheticGatherer(cfg.teacher))
  synthetic = final_buffer(cli_run, tiny_cfg)
  external = final_buffer(ext_dir, cfg)
  assert synthetic["requested"] == external["requested"] == 24
  np.testing.assert_array_equal(synthetic["label"], external["label"])
  np.testing.assert_array_equal(synthetic["counted"], external["counted"])
  # same pairs: the two drivers compile different programs (one scan vs separate calls), so
  # the simulated observations agree to float rounding, not bit for bit; contact dynamics grow
  # that rounding over the run, most in the joint velocities (seen: 0.035 in rad/s)
  np.testing.assert_allclose(synthetic["obs"][..., :5], external["obs"][..., :5], atol=5e-3)
  np.testing.assert_allclose(synthetic["obs"], external["obs"], atol=0.1)


def test_resume_continues_bit_for_bit_in_labels(cli_run, tiny_cfg, tmp_path):
  run_dir = str(tmp_path / "killed")
  os.makedirs(run_dir)
  cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(tiny_cfg.run, video=False))
  assert loop.train(cfg, run_dir, stop_after_chunks=2) is None
  partial = final_buffer(run_dir, cfg)
  assert 0 < len(partial["label"]) < 24
  loop.train(cfg, run_dir, resume=True)
  resumed = final_buffer(run_dir, cfg)
  uninterrupted = final_buffer(cli_run, tiny_cfg)
  np.testing.assert_array_equal(resumed["label"], uninterrupted["label"])
  np.testing.assert_array_equal(resumed["obs"], uninterrupted["obs"])
  np.testing.assert_array_equal(resumed["is_val"], uninterrupted["is_val"])
  np.testing.assert_array_equal(resumed["counted"], uninterrupted["counted"])
  rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
  assert [r["chunk"] for r in rows if "steps_per_s" in r] == [0, 1, 2, 3]


def test_adding_labels_never_retraces_learn(tiny_cfg):
  system = core.RLHP(tiny_cfg)
  traces = []

  def learn(state, query, label, valid):
    traces.append(1)
    return system.learn(state, query, label, valid)

  collect, learn = jax.jit(system.collect), jax.jit(learn)
  state = jax.jit(system.init)(jax.random.PRNGKey(0))
  counts = []
  for i in range(3):
    state, query, _ = collect(state)
    label = jnp.full((4,), float(i % 2))
    state, _ = learn(state, query, label, jnp.ones(4, bool))
    counts.append(int(state.buffer.count))
  assert len(traces) == 1
  assert counts[:2] == [4, 6]  # 6 initial labels at 4 per iteration, then the schedule
  assert 6 < counts[2] <= 10


def test_seeds_split_over_host_devices_match_single_seed_runs(cli_run, tiny_cfg, tmp_path):
  """Two seeds in one compile, one per host device (one XLA CPU device per core): each run is
  the run its seed gives alone."""
  if len(jax.devices()) < 2:
    pytest.skip("one device: nothing to split")
  run_dir = str(tmp_path / "two_seeds")
  os.makedirs(run_dir)
  cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(tiny_cfg.run, video=False,
                                                              num_seeds=2))
  summary = loop.train(cfg, run_dir, devices=jax.devices()[:2])
  assert summary["runs"] == 2 and summary["labels_per_run"] == [24, 24]
  system = core.RLHP(cfg)
  like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                      jax.eval_shape(jax.vmap(system.init), jnp.zeros((2, 2), jnp.uint32)))
  _, state = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints")).restore(like)
  alone = final_buffer(cli_run, tiny_cfg)
  np.testing.assert_array_equal(np.asarray(state.buffer.label)[0, :24], alone["label"])
  np.testing.assert_allclose(np.asarray(state.buffer.obs)[0, :24], alone["obs"], atol=5e-3)
  # the second seed is a different run
  assert not np.allclose(np.asarray(state.buffer.obs)[1, :24], alone["obs"], atol=5e-3)
  # a run whose reward net went NaN is named, its neighbour is not (a vmapped seed that
  # diverges must not pass unseen into an arm's statistics)
  assert summary["nonfinite_runs"] == [] and loop.nonfinite_runs(state) == []
  first = jax.tree.leaves(state.reward.params)[0]
  broken = state.replace(reward=state.reward.replace(params=jax.tree.map(
      lambda x: x.at[1].set(jnp.nan) if x is first else x, state.reward.params)))
  assert loop.nonfinite_runs(broken) == [1]


def test_solver_transfer_evaluates_a_run_under_other_solver_settings(cli_run):
  import subprocess
  import sys
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "solver_transfer.py"),
                        cli_run, "--solver", "1:4", "4:8", "--episodes", "2"],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  (row,) = json.loads(out.stdout)["results"]
  assert row["trained_solver"] == "1:4" and row["env_steps"] == 1024
  assert set(row["eval_return"]) == {"1:4", "4:8"}
  summary = json.load(open(os.path.join(cli_run, "summary.json")))
  # the training setting with the run's own evaluation key reproduces its final evaluation
  # (a different compiled program, so up to float rounding grown over 100 steps)
  assert row["eval_return"]["1:4"]["mean_length"] == 100
  np.testing.assert_allclose(row["eval_return"]["1:4"]["mean"], summary["eval_return_mean"],
                             rtol=0.05, atol=1.0)
  assert np.isfinite(row["eval_return"]["4:8"]["mean"])


def test_one_run_with_its_envs_split_over_host_devices_matches_one_device(cli_run, tiny_cfg,
                                                                          tmp_path,
                                                                          monkeypatch, caplog):
  """The main job's layout (one seed, its env batch split over the cores, each rollout
  gathered whole for the update), at a tiny size: the same labels as the one-device run. No
  device is left spare, so evaluations run in line and each row counts their seconds."""
  if len(jax.devices()) < 2:
    pytest.skip("one device: nothing to split")
  monkeypatch.setattr(layout, "MIN_ENVS_PER_DEVICE", 4)
  run_dir = str(tmp_path / "envs_split")
  os.makedirs(run_dir)
  cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(
      tiny_cfg.run, video=False, eval_every=2 * 2 * 128))    # one evaluation before the final
  caplog.set_level(logging.INFO, logger="rlhp_jax")
  loop.train(cfg, run_dir, devices=jax.devices()[:2])
  assert any("envs split over 2 devices" in r.getMessage() for r in caplog.records)
  rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
  eval_s = [r["eval_s"] for r in rows if "steps_per_s" in r]
  assert eval_s[0] == 0.0 and eval_s == sorted(eval_s)
  assert rows[-1]["final"] and rows[-1]["eval_s"] > 0      # in-line evaluations were timed
  split, alone = final_buffer(run_dir, cfg), final_buffer(cli_run, tiny_cfg)
  assert split["requested"] == alone["requested"] == 24
  np.testing.assert_array_equal(split["label"], alone["label"])
  np.testing.assert_allclose(split["obs"], alone["obs"], atol=5e-3)


def test_evaluations_run_beside_training_and_are_stamped_with_their_policy(tiny_cfg, tmp_path):
  """With a device left idle by the layout, evaluations run there while training goes on; each
  becomes its own metrics row carrying the chunk, env steps and time of the evaluated policy."""
  run_dir = str(tmp_path / "bg_eval")
  os.makedirs(run_dir)
  cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(
      tiny_cfg.run, video=False, eval_every=2 * 2 * 128))      # every 2 chunks of 2 x 128 steps
  loop.train(cfg, run_dir)
  rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
  train_rows = {r["chunk"]: r for r in rows if "steps_per_s" in r}
  evals = [r for r in rows if "eval/gym_return" in r and not r.get("final")]
  assert [r["chunk"] for r in evals] == [1]          # chunk 3 is the last: the final row covers it
  assert all(r["eval_s"] == 0.0 for r in rows)      # training never waited for one
  for r in evals:
    assert r["env_steps"] == train_rows[r["chunk"]]["env_steps"]
    assert r["time"] == pytest.approx(train_rows[r["chunk"]]["time"], abs=1e-6)
    assert 0.0 <= r["eval/healthy_fraction"][0] <= 1.0
  assert rows[-1].get("final") and rows[-1]["env_steps"] == 1024


def test_a_run_without_a_run_directory_reports_through_progress_fn(cli_run, tiny_cfg):
  """Benchmarks and notebooks drive a run with ``progress_fn`` and no files: the same rows as
  the CLI run wrote, the same summary numbers."""
  cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(tiny_cfg.run, video=False))
  seen = []
  result = loop.train(cfg, progress_fn=lambda step, row: seen.append((step, row)))
  written = [json.loads(l) for l in open(os.path.join(cli_run, "metrics.jsonl"))]
  assert [step for step, _ in seen] == [r["env_steps"] for r in written]
  assert seen[-1][1]["final"] and result["labels_per_run"] == [24]
  assert [row["prefs/labels"] for _, row in seen if "steps_per_s" in row] == [
      r["prefs/labels"] for r in written if "steps_per_s" in r]
  np.testing.assert_allclose(result["eval_return_per_run"],
                             json.load(open(os.path.join(cli_run, "summary.json")))[
                                 "eval_return_per_run"], rtol=1e-5)


def optimizer_count(opt_state) -> int:
  """Optimiser steps taken: the step counters in an optax state agree; read the first one."""
  leaves = jax.tree_util.tree_flatten_with_path(opt_state)[0]
  counts = [int(np.asarray(leaf).ravel()[0]) for path, leaf in leaves
            if getattr(path[-1], "name", None) == "count"]
  assert counts and len(set(counts)) == 1
  return counts[0]


def test_learning_rate_anneals_over_every_optimizer_step_of_the_run(tiny_cfg):
  """Several PPO updates per iteration and a frozen initial phase: the learning-rate schedule
  ends exactly when the run's last optimiser step is taken (it once ended after a quarter of
  the run with 4 rollouts per iteration, leaving PPO frozen for the rest)."""
  cfg = experiment.override(tiny_cfg, ["--prefs.rollouts-per-iteration", "2",
                                       "--run.total-env-steps", "2048"])
  system = core.RLHP(cfg)
  assert system.warmup_iterations > 0 and system.rollouts_per_iteration == 2
  teacher = cfg.teacher.params()
  chunk = jax.jit(system.chunk)
  state = jax.jit(system.init)(jax.random.PRNGKey(0))
  for _ in range(system.num_iterations // cfg.run.iterations_per_call):
    state, _ = chunk(state, teacher)
  assert optimizer_count(state.ppo.opt_state) == system.optimizer_steps
  assert system.optimizer_steps == ((system.num_iterations - system.warmup_iterations) * 2
                                    * cfg.ppo.num_epochs * cfg.ppo.num_minibatches)


def test_reward_probe_scores_the_runs_reward_and_a_retrained_one(cli_run):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "bench_reward_probe", os.path.join(ROOT, "benchmarks", "reward_probe.py"))
  probe = importlib.util.module_from_spec(spec)
  import sys
  sys.modules[spec.name] = probe
  spec.loader.exec_module(probe)
  fixed = ["--reward.l2-min", "1e-5", "--reward.l2-init", "1e-5", "--reward.l2-max", "1e-5"]
  # a bad variant is refused before anything is computed, naming the field
  with pytest.raises(config_errors.ConfigError, match="reward.l2_min"):
    probe.probe(cli_run, {"bad": ["--reward.l2-min", "-1"]}, iterations=2, steps=24, pairs=16)
  out = probe.probe(cli_run, {"l2_fixed": fixed}, iterations=2, steps=24, pairs=16)
  assert out["labels"] == 24 and out["test_steps"] == 24 * 8 and out["test_pairs"] == 16
  assert set(out["models"]) == {"online", "l2_fixed"}
  for model in out["models"].values():
    assert -1 <= model["step_corr"] <= 1
    assert 0 <= model["pair_accuracy"] <= 1 or np.isnan(model["pair_accuracy"])
    assert np.isfinite(model["healthy_price"])
    assert np.isfinite(list(model["pessimistic_healthy_price"].values())).all()
    spreads = np.array([model["spread_healthy"], model["spread_unhealthy"]])
    assert np.isfinite(spreads).any() and np.all(spreads[np.isfinite(spreads)] > 0)
  np.testing.assert_allclose(out["models"]["l2_fixed"]["l2"], [1e-5, 1e-5], rtol=1e-6)
  assert 0 <= out["test_healthy_fraction"] <= 1 and out["run"] == 0
  # a multi-seed directory's other runs by --run; one it does not hold is one line, no output
  with pytest.raises(config_errors.ConfigError, match="--run: the run directory holds runs 0-0"):
    probe.probe(cli_run, {}, iterations=2, steps=24, pairs=16, run=1)
  assert probe.main([cli_run, "--run", "3", "--online-only"]) == 2


def test_label_audit_reads_a_run_directory(cli_run, capsys):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "bench_label_audit", os.path.join(ROOT, "benchmarks", "label_audit.py"))
  audit = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(audit)
  assert audit.main([cli_run, "--bins", "2"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["labels"] == 24 and sum(b["labels"] for b in out["by_order_asked"]) == 24
  assert out["both_fallen"] + out["both_healthy"] + out["exit_vs_healthy"] <= 24
  # no branches in the tiny run: the same-start pairs are coincidences (hoppers lying still)
  assert out["run"] == 0 and 0 <= out["same_start"] <= out["both_fallen"]
  assert audit.main([os.path.dirname(cli_run), "--bins", "2"]) == 2   # not a run directory
  assert audit.main([cli_run, "--run", "1"]) == 2                     # one run only
  assert "--run must be in 0..0" in capsys.readouterr().err


def test_eval_actions_reproduces_the_runs_evaluation_and_scores_the_other_rule(cli_run, capsys):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "bench_eval_actions", os.path.join(ROOT, "benchmarks", "eval_actions.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  assert bench.main([cli_run]) == 0
  out = json.loads(capsys.readouterr().out)
  with open(os.path.join(cli_run, "summary.json")) as f:
    summary = json.load(f)
  own = out["rules"][out["run_eval_action"]]            # the run's rule, its keys: same figures
  for name, key in (("gym_return", "eval_gym_return_per_run"),
                    ("seals_return", "eval_seals_return_per_run"),
                    ("healthy_fraction_worst_episode", "eval_healthy_fraction_min_per_run")):
    np.testing.assert_allclose(own[name]["per_seed"], summary[key], rtol=1e-5)
  other = out["rules"]["mean_applied"]["gym_return"]["per_seed"]
  np.testing.assert_allclose(out["gym_return_difference"]["per_seed"],
                             np.subtract(other, own["gym_return"]["per_seed"]), rtol=1e-5)
  assert bench.main([os.path.dirname(cli_run)]) == 2                  # not a run directory


def test_partner_probe_scores_every_partner_kind(cli_run, capsys):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "bench_partner_probe", os.path.join(ROOT, "benchmarks", "partner_probe.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  out = bench.probe(cli_run, pairs=24, steps=24)
  assert set(out["partners"]) == set(bench.PARTNERS) and 0 < out["pairs"] <= 24
  for name, s in out["partners"].items():
    for key in ("partner_exits", "fragment_exits", "learned_prefers_partner",
                "teacher_prefers_partner", "ties", "wrong_order", "price_errors"):
      assert 0 <= s[key] <= 1, (name, key)
    assert 0 <= s["entropy"] <= np.log(2) + 1e-6 and np.isfinite(s["speed_gain"])
    assert s["fragment_exits"] == out["partners"]["policy"]["fragment_exits"]   # same fragments
  # the deterministic partner acts by clip(mean): both sides are the same start, other controls
  assert out["partners"]["deterministic"] != out["partners"]["policy"]
  assert bench.main([cli_run, "--run", "1"]) == 2
  assert "--run: the run directory holds runs 0-0" in capsys.readouterr().err


def test_partner_probe_scores_pairs_by_hand():
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "bench_partner_probe2", os.path.join(ROOT, "benchmarks", "partner_probe.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  # two pairs of 2-step fragments (obs: z, pitch, 3 joints, vx, ...): pair 0's partner leaves
  # the range (pitch 0.3) at 3 m/s against a healthy 1 m/s fragment; the learned reward prefers
  # the partner, the task the fragment: a price error. Pair 1: a tie on the task.
  obs = np.zeros((2, 2, 11), np.float32)
  obs[..., 0] = 1.2
  frag = {"obs": obs.copy(), "true_reward": np.array([[2.0, 2.0], [1.0, 1.0]])}
  frag["obs"][..., 5] = 1.0
  part = {"obs": obs.copy(), "true_reward": np.array([[1.0, 1.0], [1.0, 1.0]])}
  part["obs"][0, 1, 1] = 0.3
  part["obs"][..., 5] = 3.0
  frag_m = np.zeros((3, 2))
  part_m = np.array([[1.0, -1.0]] * 3)
  s = bench.score_pairs(frag, part, frag_m, part_m, 0.7, 0.2)
  assert s["partner_exits"] == 0.5 and s["fragment_exits"] == 0.0 and s["speed_gain"] == 2.0
  assert s["learned_prefers_partner"] == 0.5 and s["teacher_prefers_partner"] == 0.0
  assert s["ties"] == 0.5 and s["wrong_order"] == 1.0 and s["price_errors"] == 0.5
  p = 1 / (1 + np.exp(-1.0))
  np.testing.assert_allclose(s["entropy"], -(p * np.log(p) + (1 - p) * np.log(1 - p)), rtol=1e-5)


def test_frozen_reward_retrains_ppo_on_the_runs_final_reward(cli_run, tiny_cfg, capsys):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "bench_frozen_reward", os.path.join(ROOT, "benchmarks", "frozen_reward.py"))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  restored = checkpoint.restore_run(cli_run).one(0)
  cfg, system, state, eval_keys, described = bench.load_sources([cli_run], ppo_seeds=2)
  # every retrain holds the run's final reward; PPO seed 0 starts as the run started
  for r in range(2):
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda x: x[r], state.reward)),
                         jax.tree.leaves(restored.reward)):
      np.testing.assert_array_equal(got, want)
  first = system.init(core.run_keys(cfg, 1)[0]).ppo.params
  same = jax.tree.leaves(jax.tree.map(lambda x: x[0], state.ppo.params))
  other = jax.tree.leaves(jax.tree.map(lambda x: x[1], state.ppo.params))
  assert all(np.array_equal(a, b) for a, b in zip(same, jax.tree.leaves(first)))
  assert not all(np.array_equal(a, b) for a, b in zip(other, jax.tree.leaves(first)))
  np.testing.assert_array_equal(eval_keys[0], core.eval_keys(cfg, 1)[0])
  assert [d["ppo_seed"] for d in described] == [0, 1] and described[0]["seed"] == cfg.run.seed
  # an iteration trains the policy and leaves the reward ensemble as it was
  one = jax.tree.map(lambda x: x[0], state)
  after = jax.jit(lambda s: bench.frozen_iteration(system, s))(one)
  for a, b in zip(jax.tree.leaves(after.reward), jax.tree.leaves(one.reward)):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(after.ppo.params), jax.tree.leaves(one.ppo.params)))
  assert int(after.ppo.env_steps) == int(one.ppo.env_steps) + system.iteration_env_steps
  out = bench.retrain([cli_run], ppo_seeds=1, total_iterations=3)
  with open(os.path.join(cli_run, "summary.json")) as f:
    run_summary = json.load(f)
  (run,) = out["runs"]
  assert run["source"]["gym_return"] == run_summary["eval_gym_return_per_run"][0]
  assert run["source_passes"] is False and run["retrain_passes"] is False  # 1024 steps: no hop
  assert out["eval_env_steps"] == [3 * system.iteration_env_steps]
  assert sum(out["table"].values()) == 1 and out["table"]["source fail, retrain fail"] == 1
  assert 0 <= run["retrain"]["healthy_fraction"] <= 1
  assert bench.main([os.path.join(cli_run, "nowhere")]) == 2
  assert "is not a run directory" in capsys.readouterr().err
