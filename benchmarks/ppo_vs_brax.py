"""brax's own PPO trainer on brax's MJX Hopper against rlhp-jax's PPO on the true reward: same
env-step budget, same PPO settings where they map, same machine, one after the other. Prints
one JSON object.

    python benchmarks/ppo_vs_brax.py                  # small: 327,680 env steps a side (minutes)
    python benchmarks/ppo_vs_brax.py --full           # the experiment's run.total_env_steps
    python benchmarks/ppo_vs_brax.py --brax-python /path/to/other-venv/bin/python

brax is not a dependency of the package: ``pip install -e ".[bench]"`` adds the pinned version
(benchmarks/README.md). brax 0.14.2 still calls ``jax.device_put_replicated``, which jax 0.10
removed from its public namespace; the brax side puts jax's own implementation
(``jax._src.api.device_put_replicated``) back under that name before importing brax.

rlhp-jax runs ``experiments/hopper_ppo_true_reward.py`` through the CLI (gym-style Hopper,
Gym's reward and termination); brax runs ``brax.envs.get_environment("hopper",
backend="mjx")`` (the same Gym Hopper task on MJX) through ``brax.training.agents.ppo.train``
with the experiment's PPO settings mapped onto its arguments: envs, unroll length, minibatches
(brax's batch_size = num_envs / num_minibatches unrolls, so one SGD pass sees the same samples),
epochs, learning rate, discount, GAE lambda, clip, entropy and value costs, gradient-norm clip,
reward scale, observation normalisation, 64x64 tanh policy and value nets and a Gaussian policy
with a state-independent log std. What does not map: brax keeps the learning rate constant
(ours may anneal it), its networks use its own initialisers, and time limits go through its own
truncation mask (its ``bootstrap_on_timeout`` needs an env that reports time-outs; brax's
Hopper does not).
Both sides split their env batch over one XLA host device per core, with XNNPACK off (see
rlhp_jax/__init__.py), and evaluate the deterministic policy over 10 episodes (brax:
``deterministic_eval``, ``num_eval_envs=10``) at the same env-step points.

Figures per seed and side: ``time_to_gym_return`` (seconds from the subprocess launch, imports
and compilation included, to the first evaluation whose Gym-rules return -- Gym's reward summed
until termination, at most 1000 steps -- reaches each of ``--thresholds``; null if never),
``final`` (the last evaluation's Gym-rules return), ``total_s``, ``env_steps``; and per
threshold the ratio ours / brax. Evaluation time: each curve point is stamped when the policy
it evaluates existed (ours: rlhp-jax's rows; brax: the progress callback's time minus that
evaluation's own duration); earlier in-line evaluations stay in both clocks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from vs_imitation import _label, _ratio, machine, run_ours, time_to_thresholds  # noqa: E402

THRESHOLDS = (250.0, 500.0, 1000.0, 2000.0, 2500.0, 3000.0)
SMALL_CHUNKS = 4
BRAX_PIN = "brax==0.14.2"


# -- pure parts (tested in tests/test_benchmarks.py) ------------------------------------------

def budget(ppo: dict, iterations_per_call: int, rollouts_per_iteration: int,
           total_env_steps: int, eval_every: int) -> dict:
  """Env steps both sides train for and the evaluation interval, in whole rlhp-jax chunks (the
  unit it trains and evaluates in); the total is rounded to a whole number of evaluation
  intervals so that brax's ``num_evals`` lands on the same points."""
  iteration = ppo["num_envs"] * ppo["unroll_length"] * rollouts_per_iteration
  chunk = iteration * iterations_per_call
  every_chunks = max(1, round(eval_every / chunk))
  n_evals = max(1, round(total_env_steps / (chunk * every_chunks)))
  interval = chunk * every_chunks
  return {"env_steps": n_evals * interval, "eval_every": interval, "evaluations": n_evals,
          "rlhp_iteration_env_steps": iteration, "rlhp_chunk_env_steps": chunk}


def brax_settings(ppo: dict, plan: dict, seed: int, eval_episodes: int = 10) -> dict:
  """Keyword arguments for ``brax.training.agents.ppo.train`` (the network settings under
  ``network``) from rlhp-jax's ``PPOConfig`` fields and a ``budget``."""
  envs, mb = ppo["num_envs"], ppo["num_minibatches"]
  if envs % mb:
    raise ValueError(f"brax needs num_envs ({envs}) divisible by num_minibatches ({mb})")
  return {
      "num_timesteps": plan["env_steps"], "num_evals": plan["evaluations"] + 1,
      "episode_length": 1000, "action_repeat": 1,
      "num_envs": envs, "unroll_length": ppo["unroll_length"],
      "batch_size": envs // mb, "num_minibatches": mb,
      "num_updates_per_batch": ppo["num_epochs"],
      "learning_rate": ppo["learning_rate"], "entropy_cost": ppo["entropy_cost"],
      "discounting": ppo["discount"], "gae_lambda": ppo["gae_lambda"],
      "clipping_epsilon": ppo["clip_eps"], "vf_loss_coefficient": ppo["value_cost"],
      "max_grad_norm": ppo["max_grad_norm"], "reward_scaling": ppo["reward_scale"],
      "normalize_observations": ppo["normalize_observations"],
      "normalize_advantage": ppo["normalize_advantages"],
      "deterministic_eval": True,
      "num_eval_envs": eval_episodes, "seed": seed,
      "network": {"policy_hidden_layer_sizes": list(ppo["policy_hidden"]),
                  "value_hidden_layer_sizes": list(ppo["value_hidden"]),
                  "activation": "tanh", "distribution_type": "normal", "noise_std_type": "log",
                  "init_noise_std": math.exp(ppo["init_log_std"]),
                  "state_dependent_std": False},
  }


def brax_curve(progress: list[dict], launch_unix: float) -> list[dict]:
  """Curve points from the brax side's progress records (``env_steps``, ``unix`` when the
  callback ran, cumulative ``eval_walltime``, ``gym_return``): ``t`` excludes the evaluation
  that produced the point, as rlhp-jax's rows do."""
  points, prev_eval = [], 0.0
  for rec in progress:
    this_eval = (rec.get("eval_walltime") or 0.0) - prev_eval
    prev_eval = rec.get("eval_walltime") or prev_eval
    points.append({"t": rec["unix"] - launch_unix - max(this_eval, 0.0),
                   "env_steps": rec["env_steps"], "gym_return": rec["gym_return"]})
  return points


def compare(seed: int, brax: dict | None, ours: dict | None, thresholds) -> dict:
  """One seed's JSON block from the two sides' curves (points with ``t``, ``gym_return``)."""
  out = {"seed": seed}
  for name, side in (("brax", brax), ("ours", ours)):
    if side is None:
      continue
    curve = side["curve"]
    out[name] = {"time_to_gym_return": time_to_thresholds(curve, thresholds, "gym_return"),
                 "final": {"gym_return": curve[-1]["gym_return"] if curve else None},
                 **{k: v for k, v in side.items() if k != "curve"}, "curve": curve}
  if brax is not None and ours is not None:
    out["ours_over_brax_time"] = {
        _label(t): _ratio(out["ours"]["time_to_gym_return"][_label(t)],
                          out["brax"]["time_to_gym_return"][_label(t)]) for t in thresholds}
  return out


# -- brax side (runs under --brax-python) ------------------------------------------------------

def run_brax_side(settings: dict) -> dict:
  """Trains with brax's PPO in this process; returns its progress records and figures."""
  started = time.time()
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_use_xnnpack" not in flags:
    flags += " --xla_cpu_use_xnnpack=false"
  if "xla_force_host_platform_device_count" not in flags:
    flags += f" --xla_force_host_platform_device_count={os.cpu_count() or 1}"
  os.environ["XLA_FLAGS"] = flags.strip()
  import functools

  import jax
  from jax._src import api as jax_api
  if "device_put_replicated" not in vars(jax):  # removed from jax's namespace in 0.10
    jax.device_put_replicated = jax_api.device_put_replicated
  import brax
  from brax import envs
  from brax.training.agents.ppo import networks as ppo_networks
  from brax.training.agents.ppo import train as ppo_train
  from flax import linen

  settings = dict(settings)
  net = dict(settings.pop("network"))
  net["activation"] = getattr(linen, net["activation"])
  env = envs.get_environment("hopper", backend="mjx")
  progress = []

  def on_progress(step, metrics):
    progress.append({"env_steps": int(step), "unix": time.time(),
                     "gym_return": float(metrics["eval/episode_reward"]),
                     "eval_walltime": float(metrics.get("eval/walltime", 0.0)),
                     "training_walltime": float(metrics.get("training/walltime", 0.0))})
    print(f"brax: {int(step)} env steps, Gym-rules return {progress[-1]['gym_return']:.0f}",
          file=sys.stderr, flush=True)

  devices = jax.local_device_count()
  _, _, _ = ppo_train.train(
      environment=env, progress_fn=on_progress,
      network_factory=functools.partial(ppo_networks.make_ppo_networks, **net), **settings)
  return {"side": "brax", "brax": brax.__version__, "jax": jax.__version__,
          "devices": devices, "backend": jax.default_backend(), "started_unix": started,
          "progress": progress}


# -- driver ------------------------------------------------------------------------------------

def ppo_fields(cfg) -> dict:
  import dataclasses
  return {f.name: getattr(cfg.ppo, f.name) for f in dataclasses.fields(cfg.ppo)}


def run_brax(python: str, settings: dict) -> dict:
  cmd = [python, os.path.abspath(__file__), "--brax-side", json.dumps(settings)]
  print(f"ppo_vs_brax: brax side under {python}", file=sys.stderr, flush=True)
  load = os.getloadavg()[0]
  launch = time.time()
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, cwd=ROOT)
  end = time.time()
  if proc.returncode != 0:
    raise RuntimeError(f"brax side failed (exit {proc.returncode}); is brax installed there? "
                       f"pip install -e '.[bench]' (or {BRAX_PIN})")
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  curve = brax_curve(r["progress"], launch)
  steps = curve[-1]["env_steps"] if curve else None
  return {"curve": curve, "total_s": end - launch, "env_steps": steps,
          "versions": {"brax": r["brax"], "jax": r["jax"]}, "devices": r["devices"],
          "backend": r["backend"], "load_avg_1min": [load, os.getloadavg()[0]]}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="the experiment's own budget")
  p.add_argument("--seeds", type=int, nargs="*", default=[0])
  p.add_argument("--sides", nargs="*", choices=["brax", "ours"], default=["brax", "ours"])
  p.add_argument("--env-steps", type=int, default=None,
                 help="budget per side (default: small, or the experiment's on --full)")
  p.add_argument("--eval-every", type=int, default=None,
                 help="env steps between evaluations (default: a quarter of the small budget, "
                      "the experiment's on --full)")
  p.add_argument("--thresholds", type=float, nargs="*", default=list(THRESHOLDS))
  p.add_argument("--experiment", default=os.path.join("experiments", "hopper_ppo_true_reward.py"))
  p.add_argument("--python", default=sys.executable, help="python of rlhp-jax's .venv")
  p.add_argument("--brax-python", default=sys.executable, help="a python with brax installed")
  p.add_argument("--overrides", default="",
                 help="experiment overrides for both sides, one string, e.g. "
                      "--overrides='--ppo.num-envs 32 --ppo.num-minibatches 4'")
  p.add_argument("--brax-side", default=None, help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  if args.brax_side is not None:
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # brax's imports print to stdout
      result = run_brax_side(json.loads(args.brax_side))
    real_stdout.write(json.dumps(result) + "\n")
    return
  sys.path.insert(0, ROOT)
  from rlhp_jax import experiment
  overrides = args.overrides.split()
  cfg = experiment.override(experiment.load_experiment(os.path.join(ROOT, args.experiment)), overrides)
  ppo = ppo_fields(cfg)
  rollouts = getattr(cfg.prefs, "rollouts_per_iteration", 1)
  chunk = ppo["num_envs"] * ppo["unroll_length"] * rollouts * cfg.run.iterations_per_call
  total = args.env_steps or (cfg.run.total_env_steps if args.full else SMALL_CHUNKS * chunk)
  every = args.eval_every or (cfg.run.eval_every if args.full else total // SMALL_CHUNKS)
  plan = budget(ppo, cfg.run.iterations_per_call, rollouts, total, every)
  ours_args = overrides + ["--run.total-env-steps", str(plan["env_steps"]),
                           "--run.eval-every", str(plan["eval_every"])]
  seeds = []
  for seed in args.seeds:
    brax = ours = None
    settings = brax_settings(ppo, plan, seed, cfg.run.eval_episodes)
    if "brax" in args.sides:
      brax = run_brax(args.brax_python, settings)
    if "ours" in args.sides:
      ours = run_ours(args.python, args.experiment, seed, ours_args)
      ours["curve"] = [{k: p[k] for k in ("t", "wall_s", "env_steps", "gym_return",
                                          "healthy_fraction", "task_return")}
                       for p in ours["curve"]]
    seeds.append(compare(seed, brax, ours, args.thresholds))
  print(json.dumps({
      "benchmark": "ppo_vs_brax", "machine": machine(),
      "size": "full" if args.full else "small", "experiment": args.experiment,
      "overrides": overrides,
      "budget": plan, "thresholds": args.thresholds, "ppo": ppo,
      "brax_settings": brax_settings(ppo, plan, args.seeds[0] if args.seeds else 0,
                                     cfg.run.eval_episodes),
      "return": "Gym-rules return (Gym's reward until termination, <= 1000 steps), "
                "deterministic policy, mean over the evaluation episodes",
      "times": "seconds from each subprocess launch (imports and compilation included)",
      "seeds": seeds}, indent=1, default=str))


if __name__ == "__main__":
  main()
