"""The benchmark scripts run at a tiny size and print the JSON their docstrings promise."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(__file__))


def run_script(name, *args):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout)


def test_env_throughput_splits_the_batch_over_host_devices():
  res = run_script("env_throughput.py", "--batches", "4", "8", "--steps", "4",
                   "--solver", "1:4", "--host-devices", "2")
  assert res["benchmark"] == "env_throughput" and res["devices"] == 2
  (row,) = res["results"]
  assert (row["solver_iterations"], row["ls_iterations"]) == (1, 4)
  assert [r["batch"] for r in row["mjx"]] == [4, 8]
  assert all(r["finite"] and r["env_steps_per_s"] > 0 for r in row["mjx"])
  assert row["c_engine"]["env_steps_per_s"] > 0
  best = max(r["env_steps_per_s"] for r in row["mjx"])
  assert row["ratio_mjx_best_over_c"] == pytest.approx(best / row["c_engine"]["env_steps_per_s"])


def test_env_throughput_rejects_batches_the_devices_do_not_divide():
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "env_throughput.py"),
                        "--batches", "3", "--host-devices", "2"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode != 0 and "multiples of the 2 devices" in out.stderr
  assert "Traceback" not in out.stderr


# -- benchmarks/vs_imitation.py, imitation_side.py, ppo_vs_brax.py: their pure parts ----------

import importlib.util  # noqa: E402


def load_benchmark(name):
  spec = importlib.util.spec_from_file_location(
      f"bench_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module       # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def write_metrics(path, rows):
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")


def test_vs_imitation_times_to_thresholds_and_ratios(tmp_path):
  vs = load_benchmark("vs_imitation")
  launch = 1_000.0
  ev = lambda seals, gym: {"eval/seals_return": [seals], "eval/gym_return": [gym],
                           "eval/healthy_fraction": [0.9], "eval/forward_speed": [1.5],
                           "eval/return": [seals + 1.0]}
  write_metrics(tmp_path / "metrics.jsonl", [
      {"chunk": 0, "env_steps": 100, "wall_s": 30.0, "time": launch + 40.0},
      {"chunk": 1, "env_steps": 200, "wall_s": 40.0, "time": launch + 50.0},
      {"chunk": 1, "env_steps": 200, "wall_s": 40.0, "time": launch + 50.0, **ev(1100.0, 900.0)},
      {"chunk": 2, "env_steps": 300, "wall_s": 70.0, "time": launch + 80.0},
      {"chunk": 3, "env_steps": 400, "wall_s": 90.0, "time": launch + 100.0},
      # a background evaluation of chunk 2, written after chunk 3's row
      {"chunk": 2, "env_steps": 300, "wall_s": 70.0, "time": launch + 80.0, **ev(2500.0, 2000.0)},
      # the final row: stamped after a 30 s final evaluation; its policy existed at wall_s 100
      {"chunk": 3, "env_steps": 400, "wall_s": 100.0, "time": launch + 140.0, "final": True,
       **ev(3100.0, 2900.0)},
  ])
  curve = vs.our_curve(vs.read_metrics(tmp_path / "metrics.jsonl"), launch)
  assert [p["t"] for p in curve] == [50.0, 80.0, 110.0]
  assert [p["seals_return"] for p in curve] == [1100.0, 2500.0, 3100.0]
  assert curve[-1]["task_return"] == 3101.0 and curve[-1]["healthy_fraction"] == 0.9
  assert vs.time_to_thresholds(curve, [1000, 1270, 2214, 3000, 4000]) == {
      "1000": 50.0, "1270": 80.0, "2214": 80.0, "3000": 110.0, "4000": None}

  # evaluated in line (no spare device): the seconds spent evaluating before a row are not
  # training time, as imitation's evaluations are not
  write_metrics(tmp_path / "inline.jsonl", [
      {"chunk": 0, "env_steps": 100, "wall_s": 30.0, "time": launch + 40.0, "eval_s": 0.0},
      {"chunk": 0, "env_steps": 100, "wall_s": 30.0, "time": launch + 40.0, "eval_s": 0.0,
       **ev(1100.0, 900.0)},
      {"chunk": 1, "env_steps": 200, "wall_s": 45.0, "time": launch + 55.0, "eval_s": 4.0},
      {"chunk": 1, "env_steps": 200, "wall_s": 45.0, "time": launch + 55.0, "eval_s": 4.0,
       **ev(2500.0, 2000.0)},
      {"chunk": 1, "env_steps": 200, "wall_s": 50.0, "time": launch + 70.0, "final": True,
       "eval_s": 9.0, **ev(3100.0, 2900.0)},
  ])
  inline = vs.our_curve(vs.read_metrics(tmp_path / "inline.jsonl"), launch)
  assert [p["t"] for p in inline] == [40.0, 51.0, 51.0]     # final: start 10 + 50 - 9

  # imitation: its clock starts 1 s after our launch; it peaks above its final return
  result = {"started_unix": 501.0, "loop_s": 290.0, "total_s": 305.0, "eval_s_excluded": 9.0,
            "env_steps": 1, "agent_steps": 1, "labels": 700, "env_steps_per_s_loop": 1.0,
            "settings": {}, "imitation": "1.0.1", "stable_baselines3": "2.2.1",
            "gymnasium": "0.29.1", "torch": "2",
            "curve": [{"time_s": t, "loop_s": t - 5, "env_steps": i, "agent_steps": i,
                       "iteration": i, "seals_return": s, "gym_return": 50.0,
                       "healthy_fraction": 0.2, "forward_speed": 0.5}
                      for i, (t, s) in enumerate([(5, 300), (100, 900), (200, 1500),
                                                  (300, 1400)])]}
  imitation = vs.imitation_block({"launch_unix": 500.0, "result": result})
  assert [p["t"] for p in imitation["curve"]] == [6.0, 101.0, 201.0, 301.0]
  block = vs.compare_seed(0, imitation, {"curve": curve, "total_s": 150.0}, vs.THRESHOLDS)
  assert block["imitation"]["final"]["seals_return"] == 1400
  assert block["imitation"]["time_to_seals"] == {"1000": 201.0, "1270": 201.0, "2214": None,
                                                 "3000": None}
  to_final = block["ratios"]["to_imitation_final"]
  assert (to_final["ours_s"], to_final["imitation_s"]) == (80.0, 201.0)
  assert to_final["ours_over_imitation"] == pytest.approx(80 / 201)
  assert to_final["imitation_improved"] is True
  to_best = block["ratios"]["to_imitation_best"]  # its peak, 1500 at 201 s; ours 2500 at 80 s
  assert (to_best["seals_return"], to_best["ours_s"], to_best["imitation_s"]) == (1500, 80.0, 201.0)
  # an imitation run that ends below its initial policy's score: flagged, its best still timed
  fell = {**imitation, "curve": [dict(p, seals_return=s) for p, s in
                                 zip(imitation["curve"], [300, 1200, 500, 250])]}
  fallen = vs.compare_seed(1, fell, {"curve": curve}, vs.THRESHOLDS)["ratios"]
  assert fallen["to_imitation_final"]["imitation_improved"] is False
  assert fallen["to_imitation_final"]["ours_s"] == 50.0  # ours passes 250 at its first evaluation
  assert fallen["to_imitation_best"]["ours_over_imitation"] == pytest.approx(80 / 101)  # 1200
  assert block["ratios"]["ours_3000_over_imitation_loop"]["ratio"] == pytest.approx(110 / 290)
  out = vs.assemble({"size": "small"}, [block], vs.machine())
  assert out["summary"]["bar_third_of_imitation_time"] is False
  assert out["summary"]["bar_3000_within_imitation_loop"] is True
  assert out["summary"]["ours_over_imitation_to_its_best"] == [pytest.approx(80 / 201)]
  json.dumps(out)  # serialisable as printed


def test_vs_imitation_needs_an_imitation_interpreter():
  vs = load_benchmark("vs_imitation")
  with pytest.raises(SystemExit):
    vs.parse_args(["--sides", "imitation"])
  assert vs.parse_args(["--sides", "ours"]).seeds == [0, 1]


def test_vs_imitation_keeps_finished_seeds_when_a_later_one_fails(tmp_path, monkeypatch):
  vs = load_benchmark("vs_imitation")
  calls = []

  def fake_ours(python, experiment, seed, extra, compile_cache):
    calls.append(seed)
    if seed == 1:
      raise RuntimeError("rlhp-jax side failed")
    return {"curve": [{"t": 5.0, "seals_return": 3100.0, "gym_return": 3000.0}], "total_s": 6.0}

  monkeypatch.setattr(vs, "run_ours", fake_ours)
  out = tmp_path / "vs.json"
  with pytest.raises(RuntimeError):
    vs.main(["--sides", "ours", "--seeds", "0", "1", "--out", str(out)])
  assert calls == [0, 1]
  saved = json.loads(out.read_text())
  assert [s["seed"] for s in saved["seeds"]] == [0]
  assert saved["seeds"][0]["ours"]["time_to_seals"]["3000"] == 5.0
  assert not os.path.exists(str(out) + ".tmp")


def test_vs_imitation_evaluates_ours_as_often_as_imitation_at_full_size(monkeypatch, capsys):
  """At full size our side is evaluated every jitted call (32,768 env steps), not at the main
  job's 131,072, so its times to thresholds have imitation's resolution; a user's --ours-args
  come last and win."""
  vs = load_benchmark("vs_imitation")
  seen = []

  caches = []

  def fake_ours(python, experiment, seed, extra, compile_cache):
    seen.append(list(extra))
    caches.append(compile_cache)
    return {"curve": [{"t": 5.0, "seals_return": 3100.0}], "total_s": 6.0}

  monkeypatch.setattr(vs, "run_ours", fake_ours)
  vs.main(["--sides", "ours", "--seeds", "0", "--full"])
  vs.main(["--sides", "ours", "--seeds", "0", "--full", "--ours-args=--run.eval-every 65536"])
  vs.main(["--sides", "ours", "--seeds", "0", "--ours-compile-cache", "/somewhere/xla"])
  out = capsys.readouterr().out
  assert seen[0] == ["--run.eval-every", "32768"]
  assert seen[1][-2:] == ["--run.eval-every", "65536"]
  assert seen[2] == vs.SMALL_OURS
  # our side compiles from scratch (as on a fresh clone) unless a cache folder is named
  assert caches == ["off", "off", "/somewhere/xla"]
  last = json.loads(out[out.rindex("\n{\n") + 1:])     # the third call's JSON
  assert last["ours_compile_cache"] == "/somewhere/xla"


def test_imitation_side_episode_figures():
  side = load_benchmark("imitation_side")  # stdlib-only at import: no imitation needed
  np = pytest.importorskip("numpy")
  healthy_q = np.array([0.0, 1.25, 0.1, 0.0, 0.0, 0.0])
  assert side.is_healthy(healthy_q, np.zeros(6))
  assert not side.is_healthy(healthy_q * [1, 0.5, 1, 1, 1, 1], np.zeros(6))  # z = 0.625
  assert not side.is_healthy(healthy_q + [0, 0, 0.15, 0, 0, 0], np.zeros(6))  # pitch 0.25
  assert not side.is_healthy(healthy_q, np.array([0, 0, 0, 0, 0, 101.0]))
  step = lambda fwd, healthy: {"reward": fwd + healthy - 0.01, "forward": fwd, "ctrl": 0.01,
                               "healthy": healthy, "dx": fwd * 0.008, "dt": 0.008}
  ep = side.episode_returns([step(2.0, True), step(3.0, False), step(4.0, True)])
  assert ep["seals_return"] == pytest.approx(2.99 + 2.99 + 4.99)
  assert ep["gym_return"] == pytest.approx(2.99 + 3.99)  # up to the first unhealthy step
  assert ep["healthy_fraction"] == pytest.approx(2 / 3)
  assert ep["forward_speed"] == pytest.approx(3.0)


def test_ppo_vs_brax_budget_settings_and_curves():
  pvb = load_benchmark("ppo_vs_brax")
  ppo = {"num_envs": 256, "unroll_length": 64, "num_minibatches": 16, "num_epochs": 5,
         "learning_rate": 3e-4, "entropy_cost": 0.0, "discount": 0.99, "gae_lambda": 0.95,
         "clip_eps": 0.2, "value_cost": 0.5, "max_grad_norm": 0.5, "reward_scale": 0.1,
         "normalize_observations": True, "normalize_advantages": True,
         "policy_hidden": (64, 64), "value_hidden": (64, 64), "init_log_std": -0.5}
  plan = pvb.budget(ppo, 5, 1, 5_000_000, 500_000)
  assert plan["rlhp_chunk_env_steps"] == 81_920 and plan["eval_every"] == 6 * 81_920
  assert (plan["evaluations"], plan["env_steps"]) == (10, 60 * 81_920)
  s = pvb.brax_settings(ppo, plan, seed=3)
  # one SGD pass sees the same samples: brax's batch_size counts unrolls
  assert s["batch_size"] * s["num_minibatches"] * s["unroll_length"] == 256 * 64
  assert s["batch_size"] * s["unroll_length"] == 16_384 // 16
  assert (s["num_evals"], s["num_timesteps"], s["seed"]) == (11, plan["env_steps"], 3)
  assert s["network"]["init_noise_std"] == pytest.approx(0.60653066)
  with pytest.raises(ValueError):
    pvb.brax_settings({**ppo, "num_minibatches": 3}, plan, seed=0)
  brax_curve = pvb.brax_curve(
      [{"env_steps": 0, "unix": 130.0, "eval_walltime": 20.0, "gym_return": 10.0},
       {"env_steps": 10, "unix": 200.0, "eval_walltime": 25.0, "gym_return": 1200.0}], 100.0)
  assert [p["t"] for p in brax_curve] == [10.0, 95.0]  # each minus its own evaluation
  ours = {"curve": [{"t": 50.0, "gym_return": 600.0}, {"t": 70.0, "gym_return": 2100.0}]}
  block = pvb.compare(0, {"curve": brax_curve}, ours, [500, 1000, 2000, 3000])
  assert block["brax"]["time_to_gym_return"] == {"500": 95.0, "1000": 95.0, "2000": None,
                                                 "3000": None}
  assert block["ours_over_brax_time"]["500"] == pytest.approx(50 / 95)
  assert block["ours_over_brax_time"]["2000"] is None
  assert block["ours"]["final"]["gym_return"] == 2100.0


def test_brax_accepts_the_mapped_settings():
  """Only where brax is installed (the optional ``bench`` extra)."""
  pytest.importorskip("brax")
  import inspect
  from brax.training.agents.ppo import networks as ppo_networks
  from brax.training.agents.ppo import train as ppo_train
  pvb = load_benchmark("ppo_vs_brax")
  ppo = {"num_envs": 32, "unroll_length": 8, "num_minibatches": 4, "num_epochs": 2,
         "learning_rate": 3e-4, "entropy_cost": 0.0, "discount": 0.99, "gae_lambda": 0.95,
         "clip_eps": 0.2, "value_cost": 0.5, "max_grad_norm": 0.5, "reward_scale": 0.1,
         "normalize_observations": True, "normalize_advantages": True,
         "policy_hidden": (64, 64), "value_hidden": (64, 64), "init_log_std": -0.5}
  s = pvb.brax_settings(ppo, pvb.budget(ppo, 2, 1, 1024, 512), seed=0)
  net = s.pop("network")
  assert set(s) <= set(inspect.signature(ppo_train.train).parameters)
  assert set(net) <= set(inspect.signature(ppo_networks.make_ppo_networks).parameters)


def test_imitation_side_settings_fit_its_libraries():
  """Only where RLHP_IMITATION_PYTHON names imitation's own interpreter (benchmarks/README.md)."""
  python = os.environ.get("RLHP_IMITATION_PYTHON")
  if not python:
    pytest.skip("RLHP_IMITATION_PYTHON not set")
  code = ("import inspect, sys; sys.path.insert(0, 'benchmarks'); import imitation_side as s;"
          "import imitation, stable_baselines3 as sb3;"
          "assert imitation.__version__ == '1.0.1', imitation.__version__;"
          "assert set(s.PPO_KWARGS) <= set(inspect.signature(sb3.PPO).parameters)")
  out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]


# -- benchmarks/reward_probe.py: its scores (the end-to-end probe runs in test_loop.py) -------

def _probe_test_set(true_reward, speed, healthy, length=4, pairs=64, seed=0):
  probe = load_benchmark("reward_probe")
  import numpy as np
  rng = np.random.default_rng(seed)
  steps, envs = true_reward.shape
  obs = np.zeros((steps, envs, 11), np.float32)
  obs[..., probe.SPEED_INDEX] = speed
  return probe.TestSet(obs=obs, action=np.zeros((steps, envs, 3), np.float32),
                 true_reward=true_reward, healthy=healthy,
                 starts=rng.integers(0, steps - length, (pairs, 2)),
                 envs=rng.integers(0, envs, (pairs, 2)), length=length)


def test_reward_probe_scores_against_the_task_reward():
  import numpy as np
  probe = load_benchmark("reward_probe")
  score, healthy_price = probe.score, probe.healthy_price
  rng = np.random.default_rng(0)
  speed = rng.normal(1.0, 1.0, (64, 4))
  healthy = (rng.random((64, 4)) < 0.7).astype(np.float32)
  true = healthy * (speed + 1.0) - (1.0 - healthy)        # the fixed-horizon task's form
  test = _probe_test_set(true, speed, healthy)
  frag = lambda r: test.fragments(r).sum(-1)
  exact = score(true, frag(true), test)
  assert exact["step_corr"] == pytest.approx(1.0) and exact["pair_accuracy"] == 1.0
  flipped = score(-true, frag(-true), test)
  assert flipped["step_corr"] == pytest.approx(-1.0) and flipped["pair_accuracy"] == 0.0
  # a reward that pays speed alone prices health at 0; one linear in both at its ratio
  assert score(speed, frag(speed), test)["healthy_price"] == pytest.approx(0.0, abs=1e-6)
  assert healthy_price(2.0 * speed + 3.0 * healthy + 1.0, speed, healthy) == pytest.approx(1.5)
  # charging for a spread that sits outside the range alone raises the price by lambda
  prices = probe.pessimistic_prices(speed, 1.0 - healthy, speed, healthy)
  assert set(prices) == {str(lam) for lam in probe.PESSIMISM_WEIGHTS}
  for lam, price in prices.items():
    assert price == pytest.approx(float(lam))
  # the fragments are the test set's own steps: [N, 2, L] from starts and envs
  f = test.fragments(true)
  assert f.shape == (64, 2, 4)
  np.testing.assert_array_equal(f[5, 1], true[test.starts[5, 1]:test.starts[5, 1] + 4,
                                              test.envs[5, 1]])


# -- benchmarks/label_audit.py: sorting labelled pairs by what they show of the healthy range --

def test_label_audit_sorts_pairs_by_the_healthy_range_and_scores_the_exits():
  import numpy as np
  audit = load_benchmark("label_audit")
  length = 4
  obs = np.zeros((5, 2, length, 11), np.float32)
  obs[..., audit.HEIGHT] = 1.2                 # upright, pitch 0: inside the range
  obs[0, :, :, audit.HEIGHT] = 0.3             # pair 0: two fallen fragments
  obs[1, 1, 2:, audit.PITCH] = 0.25            # pair 1: the second leaves the range (2 steps)
  obs[1, 1, :, audit.SPEED] = 3.0              # ... and is faster by 1 m/s
  obs[1, 0, :, audit.SPEED] = 2.0
  obs[2, 0, 1:, audit.PITCH] = -0.3            # pair 2: the first leaves it (3 steps) ...
  obs[2, 0, :, audit.SPEED] = 1.0              # ... and is slower by 0.5 m/s
  obs[2, 1, :, audit.SPEED] = 1.5
  obs[3, 0, :, audit.HEIGHT] = 0.5             # pair 3: fallen against upright: not an exit
  label = np.array([0.5, 1.0, 1.0, 0.0, 1.0])  # pair 2's teacher preferred the exiting one
  out = audit.audit(obs, label, z_min=0.7, angle_max=0.2, bins=2)
  assert (out["labels"], out["ties"], out["both_fallen"], out["both_healthy"],
          out["exit_vs_healthy"]) == (5, 1, 1, 1, 2)
  assert [(b["from"], b["to"], b["labels"]) for b in out["by_order_asked"]] == [(0, 2, 2),
                                                                                 (2, 5, 3)]
  assert out["by_order_asked"][0]["exit_vs_healthy"] == 1
  assert out["same_start"] == 2                # pairs 0 and 4 start in one state (1 and 2 do not)
  ex = out["exit_vs_healthy_pairs"]
  assert ex["teacher_preferred_healthy"] == pytest.approx(0.5)
  assert ex["steps_outside_mean"] == pytest.approx(2.5)
  assert ex["exit_faster_by_mean_m_per_s"] == pytest.approx((1.0 - 0.5) / 2)
  assert ex["exit_faster_share"] == pytest.approx(0.5)
  # no exits, no exit statistics
  assert "exit_vs_healthy_pairs" not in audit.audit(obs[[0, 3, 4]], label[[0, 3, 4]], 0.7, 0.2)


def test_arms_reports_every_score_per_seed_and_saves_each_arms_config(tmp_path):
  out = run_script("arms.py", "--tiny", "--seeds", "2", "--arms", "preferences",
                   "--total-env-steps", "512", "--first-seed", "3", "--out", str(tmp_path))
  arm = out["arms"]["preferences"]
  assert out["seeds_per_arm"] == 2 and arm["env_steps_per_seed"] == 512
  for name in ("gym_return", "seals_return", "task_return", "healthy_fraction",
               "forward_speed", "gym_length", "gym_length_worst_episode"):
    assert arm[name]["n_seeds"] == 2 and len(arm[name]["per_seed"]) == 2, name
    low, high = arm[name]["ci95"]
    assert arm[name]["min"] <= low <= high <= arm[name]["max"], name
  assert all(1 <= n <= 50 for n in arm["gym_length"]["per_seed"])   # tiny evaluations: 50 steps
  assert all(w <= m for w, m in zip(arm["gym_length_worst_episode"]["per_seed"],
                                    arm["gym_length"]["per_seed"]))
  # the arm's run directory carries its config, so reward_probe and --resume can read it
  from rlhp_jax import experiment
  cfg = experiment.load_experiment(str(tmp_path / "preferences" / "config.json"))
  assert cfg.reward_source == "preferences" and cfg.run.num_seeds == 2
  assert cfg.run.seed == 3     # --first-seed: seeds 3 and 4, whatever the experiment's run.seed
  assert os.path.getsize(tmp_path / "arms_curves.png") > 1000
  # the share of seeds meeting the main job's bar, seed by seed from the scores above
  bar = arm["upright_bar"]
  assert bar["of"] == 2 and len(bar["per_seed"]) == 2 and 0 <= bar["ci95"][0] <= bar["ci95"][1]
  assert bar["per_seed"] == [g >= 2500 and s >= 3000 and h >= 0.9 for g, s, h in zip(
      arm["gym_return"]["per_seed"], arm["seals_return"]["per_seed"],
      arm["healthy_fraction_worst_episode"]["per_seed"])]


def _scores(gym, seals, healthy_worst):
  return {"gym_return": {"per_seed": gym}, "seals_return": {"per_seed": seals},
          "healthy_fraction_worst_episode": {"per_seed": healthy_worst}}


def test_bar_rates_scores_each_seed_against_every_part_of_the_bar(tmp_path):
  # seed by seed: passes; Gym-rules short; seals-style short; one episode unhealthy; passes
  arm = _scores([3600, 2400, 2600, 3500, 2500], [3600, 3500, 2900, 3500, 3000],
                [1.0, 1.0, 0.99, 0.85, 0.9])
  (tmp_path / "arms.json").write_text(json.dumps(
      {"benchmark": "arms", "eval_action": "clip_mean",
       "arms": {"preferences": {**arm, "env_steps_per_seed": 1024},
                "old": {"gym_return": {"iqm": 1.0}}}}))   # no per-seed scores: left out
  (tmp_path / "eval.json").write_text(json.dumps(
      {"benchmark": "eval_actions", "rules": {"clip_mean": _scores([100], [3200], [0.99]),
                                              "mean_applied": _scores([2600], [3200], [0.99])}}))
  runs = []
  for i, (g, s, h) in enumerate([(3000, 3100, 0.95), (128, 3125, 0.986)]):
    d = tmp_path / f"run{i}"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(
        {"env_steps": 4096, "eval_gym_return_per_run": [g], "eval_seals_return_per_run": [s],
         "eval_healthy_fraction_min_per_run": [h], "eval_return_per_run": [0.0],
         "eval_healthy_fraction_per_run": [h], "eval_forward_speed_per_run": [2.0],
         "eval_gym_length_per_run": [1000], "eval_gym_length_min_per_run": [1000]}))
    runs.append(str(d))
  (tmp_path / "run0" / "config.json").write_text(json.dumps({"run": {"seed": 7}}))
  out = run_script("bar_rates.py", str(tmp_path / "arms.json"), str(tmp_path / "eval.json"),
                   "--runs", *runs)
  rows = out["arms"]
  assert set(rows) == {"arms.json:preferences", "eval.json:clip_mean", "eval.json:mean_applied",
                       "single runs"}
  pref = rows["arms.json:preferences"]
  assert pref["upright_bar"]["per_seed"] == [True, False, False, False, True]
  assert (pref["upright_bar"]["met"], pref["upright_bar"]["of"]) == (2, 5)
  assert pref["gym_return_2500"]["met"] == 4 and pref["eval_action"] == "clip_mean"
  assert rows["eval.json:clip_mean"]["upright_bar"]["met"] == 0
  assert rows["eval.json:mean_applied"]["upright_bar"]["met"] == 1
  single = rows["single runs"]
  assert single["upright_bar"]["per_seed"] == [True, False] and single["runs"] == ["run0", "run1"]
  assert single["seeds"] == [7, None]   # from run0's config.json; run1 has none
  assert single["env_steps_per_seed"] == 4096
  lo, hi = single["upright_bar"]["ci95"]
  assert 0 < lo < 0.5 < hi < 1


def test_arms_refuses_a_bad_seed_in_one_line_and_writes_nothing(tmp_path):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "arms.py"), "--tiny",
                        "--first-seed", "-1", "--out", str(tmp_path / "arms")],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2 and "arms: run.seed: must be an integer >= 0" in out.stderr
  assert "Traceback" not in out.stderr and out.stdout == ""
  assert not (tmp_path / "arms").exists()


def test_bar_rates_names_a_run_without_a_summary(tmp_path):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bar_rates.py"),
                        "--runs", str(tmp_path)], capture_output=True, text=True, timeout=300)
  assert out.returncode == 2 and "has no summary.json" in out.stderr
  assert "Traceback" not in out.stderr and out.stdout == ""


def test_pooled_ratio_pairs_seed_blocks_pools_them_and_counts_draws_that_reach_the_bar(tmp_path):
  # block 1 (an arms.json): preferences [100, 3000, 200, 3000] against the task [3000] x 4;
  # block 2 (preferences from another arms.json, the task from an eval_actions rule).
  (tmp_path / "a.json").write_text(json.dumps({"benchmark": "arms", "arms": {
      "preferences": _scores([100, 3000, 200, 3000], [3100] * 4, [1.0] * 4),
      "true": _scores([3000] * 4, [3000] * 4, [1.0] * 4)}}))
  (tmp_path / "b.json").write_text(json.dumps({"benchmark": "arms", "arms": {
      "preferences": _scores([300, 3000, 3000, 3000], [3100, 3100, 2900, 3100],
                             [1.0, 1.0, 1.0, 0.5])}}))
  (tmp_path / "e.json").write_text(json.dumps({"benchmark": "eval_actions", "rules": {
      "clip_mean": _scores([3000, 3000, 3000, 2000], [3000] * 4, [1.0] * 4)}}))
  out = run_script("pooled_ratio.py",
                   "--numerator", f"{tmp_path / 'a.json'}:preferences",
                   f"{tmp_path / 'b.json'}:preferences",
                   "--denominator", f"{tmp_path / 'a.json'}:true", f"{tmp_path / 'e.json'}:clip_mean",
                   "--resamples", "2000")
  one, two = out["blocks"]
  assert one["numerator_iqm"] == pytest.approx(1600)      # middle half of 100, 200, 3000, 3000
  assert one["ratio"]["ratio"] == pytest.approx(1600 / 3000)
  assert two["numerator_iqm"] == pytest.approx(3000) and two["denominator_iqm"] == pytest.approx(3000)
  pooled = out["pooled"]
  # pooled preferences sorted: 100 200 300 3000 x 5 -> middle half: 300, 3000, 3000, 3000
  assert pooled["n_seeds"] == 8
  assert pooled["numerator"]["iqm"] == pytest.approx(2325)
  assert pooled["denominator"]["iqm"] == pytest.approx(3000)   # 2000 trimmed
  assert pooled["ratio"]["ratio"] == pytest.approx(2325 / 3000)
  lo, hi = pooled["ratio"]["ci95"]
  assert lo < 2325 / 3000 < hi
  # the whole bar, seed by seed: b's third seed has seals 2900 and its fourth an unhealthy episode
  assert pooled["upright_bar"]["numerator"]["per_seed"] == [False, True, False, True,
                                                           False, True, False, False]
  assert pooled["upright_bar"]["denominator"]["met"] == 7
  assert out["draws"]["seeds"] == 8 and 0 <= out["draws"]["share_reaching_bar"] <= 1


def test_pooled_ratio_draw_share_matches_the_binomial_and_bad_blocks_are_named(tmp_path, capsys):
  import numpy as np
  pooled_ratio = load_benchmark("pooled_ratio")
  task = np.full(8, 3000.0)
  assert pooled_ratio.draw_share(task, task, 8, 0.9, 500) == 1.0
  assert pooled_ratio.draw_share(np.full(8, 100.0), task, 8, 0.9, 500) == 0.0
  # half the seeds fail: an 8-seed draw's IQM is the task's only with at most 2 failures in the
  # draw (they are trimmed), P = (1 + 8 + 28) / 256; with 3 it is 0.75 of it
  half = np.array([0.0] * 4 + [3000.0] * 4)
  assert pooled_ratio.draw_share(half, task, 8, 0.9, 20_000) == pytest.approx(37 / 256, abs=0.01)
  (tmp_path / "a.json").write_text(json.dumps({"benchmark": "arms", "arms": {
      "preferences": _scores([1.0] * 3, [1.0] * 3, [1.0] * 3),
      "true": _scores([1.0] * 2, [1.0] * 2, [1.0] * 2)}}))
  (tmp_path / "bad.json").write_text("{ not json")
  for args, message in [
      (["--numerator", f"{tmp_path / 'a.json'}:preferences",
        "--denominator", f"{tmp_path / 'a.json'}:true"], "must hold the same seeds"),
      (["--numerator", f"{tmp_path / 'a.json'}:preferences"], "give as many blocks"),
      (["--numerator", f"{tmp_path / 'a.json'}:nope", "--denominator", f"{tmp_path / 'a.json'}:true"],
       "has no arm 'nope'"),
      (["--numerator", f"{tmp_path / 'a.json'}:true", "--denominator", f"{tmp_path / 'a.json'}:true",
        "--score", "task_return"], "has no per-seed 'task_return'"),
      (["--numerator", str(tmp_path / "a.json"), "--denominator", "x"], "is not FILE:ARM"),
      (["--numerator", f"{tmp_path / 'bad.json'}:true", "--denominator", f"{tmp_path / 'a.json'}:true"],
       "bad.json is not JSON")]:
    assert pooled_ratio.main(args) == 2
    out = capsys.readouterr()
    last = out.err.strip().splitlines()[-1]      # (mujoco may have said it has no warp first)
    assert last.startswith("pooled_ratio: ") and message in last, (args, out.err)
    assert "Traceback" not in out.err and out.out == ""
