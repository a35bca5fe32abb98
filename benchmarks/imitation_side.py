"""imitation 1.0.1's preference comparisons on seals/Hopper-v1, timed, with a learning curve.
Prints one JSON object on stdout.

Run by the interpreter of imitation's OWN virtualenv (see benchmarks/README.md), normally as
a subprocess of ``benchmarks/vs_imitation.py``; it never imports rlhp_jax:

    ../imitation-venv/bin/python benchmarks/imitation_side.py --seed 0      # full size
    ../imitation-venv/bin/python benchmarks/imitation_side.py --seed 0 --total-timesteps 16384
        --comparisons 40 --num-iterations 2 --eval-every 4096            # (one line) a smoke run

What runs is what imitation's own ``train_preference_comparisons`` script builds with its
``seals_hopper`` named config (the PPO settings imitation tuned for seals Hopper), with the env
id moved to the gymnasium-era ``seals/Hopper-v1``: SB3 PPO (MlpPolicy, ReLU 64x64 policy and
value nets, 2048 env steps per update over 8 envs, minibatch 512, 20 epochs, clip 0.1,
discount 0.995, GAE lambda 0.98, lr 3.9e-4, entropy 1.0e-3, value coefficient 0.20, grad norm
0.9); BasicRewardNet with running input normalisation inside NormalizedRewardNet (running
output normalisation); RandomFragmenter; SyntheticGatherer (Boltzmann-sampled, temperature
1); BasicRewardTrainer with 3 epochs (200x on the first, random-policy round); hyperbolic query
schedule, 10% of the comparisons up front, fragments of 100 steps. Every one of these is the
script's default or its seals_hopper setting; the flags below only change the budget.

The policy is evaluated with the clock stopped:
  * after every preference-comparison iteration (``PreferenceComparisons.train(callback=)``),
  * and, for a finer curve, every ``--eval-every`` PPO env steps inside the agent's training
    (an SB3 callback at the start of a rollout, i.e. just after a PPO update).
One evaluation = ``--eval-episodes`` deterministic 1000-step seals/Hopper-v1 episodes (same
reset seed every time), the policy acting by ``--eval-action`` (SB3's clip of the mean, or the
mean of the clipped control: ``vs_imitation.py`` passes the rule our experiment evaluates by).
From each episode:
  * ``seals_return``: the seals env's own reward summed over the 1000 steps: forward velocity
    + 1 per step ending healthy - 1e-3 |a|^2 (no termination); what imitation reports;
  * ``gym_return``: Gym Hopper's reward (forward + 1 - 1e-3 |a|^2, the bonus paid on every step
    of a live episode) summed until the first step that ends unhealthy, inclusive: the return
    the same policy would get under Gym's termination rules;
  * ``healthy_fraction``: share of the 1000 steps that end inside Gym's healthy range
    (z > 0.7, |pitch| < 0.2, |qpos[2:]|, |qvel| < 100; read from env.unwrapped.data);
  * ``forward_speed``: metres travelled per second over the episode.

Times (seconds, evaluation excluded): ``time_s`` since this process started (imports and set-up
count), ``loop_s`` since ``PreferenceComparisons.train`` began; ``started_unix`` lets a parent
add its own launch latency.
"""

from __future__ import annotations

import time

STARTED_UNIX = time.time()  # before the heavy imports: they count, as our compile does

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

ENV_ID = "seals/Hopper-v1"
EPISODE_STEPS = 1000
HEALTHY_Z = 0.7
HEALTHY_PITCH = 0.2
HEALTHY_STATE = 100.0
CTRL_COST = 1e-3

# imitation/scripts/config/train_preference_comparisons.py, named config ``seals_hopper``
# (identical to train_rl.py's tuned seals_hopper PPO): rl.batch_size is the env steps per PPO
# update over all envs; rl_kwargs go to SB3's PPO.
PPO_ROLLOUT_STEPS = 2048
PPO_KWARGS = dict(batch_size=512, clip_range=0.1, ent_coef=0.0010159833764878474,
                  gae_lambda=0.98, gamma=0.995, learning_rate=0.0003904770450788824,
                  max_grad_norm=0.9, n_epochs=20, vf_coef=0.20315938606555833)
POLICY_HIDDEN = [64, 64]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--total-timesteps", type=int, default=1_000_000,
                 help="PreferenceComparisons.train's total_timesteps (the script's default); "
                      "note imitation trains the agent (num_iterations + 1) x "
                      "total_timesteps / num_iterations steps")
  p.add_argument("--comparisons", type=int, default=700, help="synthetic labels in all")
  p.add_argument("--num-iterations", type=int, default=5, help="the script's default")
  p.add_argument("--fragment-length", type=int, default=100, help="the script's default")
  p.add_argument("--num-envs", type=int, default=8, help="the script's default num_vec")
  p.add_argument("--parallel", action="store_true",
                 help="SubprocVecEnv (the script's default) instead of DummyVecEnv; on a 2-core "
                      "machine the subprocesses cost more than they save")
  p.add_argument("--eval-every", type=int, default=20_480,
                 help="PPO env steps between extra evaluations inside the agent's training "
                      "(0: only after each preference-comparison iteration)")
  p.add_argument("--eval-episodes", type=int, default=1)
  p.add_argument("--eval-action", choices=["clip_mean", "mean_applied"], default="clip_mean",
                 help="how the evaluated policy acts without noise: clip of the Gaussian's mean "
                      "(SB3's deterministic=True) or the mean of the clipped control, E[clip(a)] "
                      "(rlhp-jax's run.eval_action of the same name)")
  p.add_argument("--torch-threads", type=int, default=1,
                 help="torch's intra-op threads (0: torch's default, one per core). One is "
                      "imitation's best here: SB3 PPO's 64x64 nets gain nothing from a second "
                      "thread, and with another process on a 2-core machine two threads spin "
                      "against each other (measured: 773 env steps/s with 1, 88 with 2)")
  return p.parse_args(argv)


def is_healthy(qpos, qvel) -> bool:
  """Gym Hopper's healthy range (gymnasium hopper_v4.is_healthy), from the full state."""
  import numpy as np
  state = np.concatenate([qpos[2:], qvel])
  return bool(np.all(np.abs(state) < HEALTHY_STATE) and qpos[1] > HEALTHY_Z
              and abs(qpos[2]) < HEALTHY_PITCH)


def episode_returns(steps) -> dict:
  """The four figures of one episode from per-step records (dicts with ``reward`` (the seals
  env's), ``forward`` (m/s over the step), ``ctrl`` (1e-3 |a|^2), ``healthy`` (after the step),
  ``dx`` (metres moved) and ``dt``). Pure, so the arithmetic is testable without MuJoCo."""
  seals = sum(s["reward"] for s in steps)
  gym, alive = 0.0, True
  for s in steps:
    if not alive:
      break
    gym += s["forward"] + 1.0 - s["ctrl"]
    alive = s["healthy"]
  duration = sum(s["dt"] for s in steps)
  return {"seals_return": float(seals), "gym_return": float(gym),
          "healthy_fraction": sum(bool(s["healthy"]) for s in steps) / max(len(steps), 1),
          "forward_speed": float(sum(s["dx"] for s in steps) / duration) if duration else 0.0}


def expected_clipped(mean, std, low, high):
  """E[clip(a, low, high)] for a ~ N(mean, std^2), per dimension (numpy, closed form)."""
  import math
  import numpy as np
  cdf = np.vectorize(lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))))
  pdf = lambda x: np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # noqa: E731
  lo, hi = (low - mean) / std, (high - mean) / std
  inside = mean * (cdf(hi) - cdf(lo)) + std * (pdf(lo) - pdf(hi))
  return np.clip(inside + low * cdf(lo) + high * (1.0 - cdf(hi)), low, high)


def noiseless_action(policy, obs, rule: str):
  """SB3's deterministic action (clip of the mean: predict clips to the box) or, for
  ``mean_applied``, the mean of the clipped control under the policy's Gaussian."""
  if rule == "clip_mean":
    return policy.predict(obs, deterministic=True)[0]
  import torch
  obs_t, _ = policy.obs_to_tensor(obs)
  with torch.no_grad():
    dist = policy.get_distribution(obs_t).distribution
  space = policy.action_space
  return expected_clipped(dist.mean.numpy()[0], dist.stddev.numpy()[0], space.low, space.high)


def run_episode(policy, env, seed: int, rule: str = "clip_mean") -> dict:
  """One deterministic seals episode; returns ``episode_returns`` plus the largest gap between
  the env's reward and forward + 1[healthy] - ctrl (0 if our health check matches seals')."""
  import numpy as np
  obs, _ = env.reset(seed=seed)
  data, dt = env.unwrapped.data, env.unwrapped.dt
  steps, gap = [], 0.0
  for _ in range(EPISODE_STEPS):
    action = noiseless_action(policy, obs, rule)
    x0 = float(data.qpos[0])
    obs, reward, terminated, truncated, _ = env.step(action)
    dx = float(data.qpos[0]) - x0
    healthy = is_healthy(np.array(data.qpos), np.array(data.qvel))
    ctrl = CTRL_COST * float(np.sum(np.square(action)))
    steps.append({"reward": float(reward), "forward": dx / dt, "ctrl": ctrl,
                  "healthy": healthy, "dx": dx, "dt": dt})
    gap = max(gap, abs(float(reward) - (dx / dt + float(healthy) - ctrl)))
    if terminated or truncated:
      break
  out = episode_returns(steps)
  out["steps"], out["reward_check_gap"] = len(steps), gap
  return out


class Clock:
  """Wall-clock with pauses: evaluation time is excluded from what it reports."""

  def __init__(self, origin: float):
    self.origin, self.paused_s = origin, 0.0

  def now(self) -> float:
    return time.time() - self.origin - self.paused_s

  @contextlib.contextmanager
  def paused(self):
    t0 = time.time()
    try:
      yield
    finally:
      self.paused_s += time.time() - t0


def main(argv=None):
  args = parse_args(argv)
  real_stdout = sys.stdout
  with contextlib.redirect_stdout(sys.stderr):  # imitation prints its query schedule
    result = run(args)
  json.dump(result, real_stdout, indent=1)
  real_stdout.write("\n")


def run(args) -> dict:
  clock = Clock(STARTED_UNIX)
  import gymnasium as gym
  import imitation
  import numpy as np
  import seals  # noqa: F401  (registers seals/*)
  import stable_baselines3 as sb3
  import torch
  from imitation.algorithms import preference_comparisons as pc
  from imitation.rewards import reward_nets
  from imitation.util import logger as imit_logger
  from imitation.util import networks, util
  from stable_baselines3.common.callbacks import BaseCallback
  from stable_baselines3.common.vec_env import VecEnvWrapper

  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  rng = np.random.default_rng(args.seed)
  log_dir = tempfile.mkdtemp(prefix="imitation-side-")
  logger = imit_logger.configure(log_dir, format_strs=[])

  class CountSteps(VecEnvWrapper):
    """Counts every env step, PPO's and the extra ones sampled for fragments."""

    def __init__(self, venv):
      super().__init__(venv)
      self.count = 0

    def reset(self):
      return self.venv.reset()

    def step_wait(self):
      self.count += self.num_envs
      return self.venv.step_wait()

  venv = CountSteps(util.make_vec_env(ENV_ID, rng=rng, n_envs=args.num_envs,
                                      parallel=args.parallel))
  reward_net = reward_nets.NormalizedRewardNet(
      reward_nets.BasicRewardNet(venv.observation_space, venv.action_space,
                                 normalize_input_layer=networks.RunningNorm),
      networks.RunningNorm)
  agent = sb3.PPO("MlpPolicy", venv, seed=args.seed, verbose=0,
                  n_steps=PPO_ROLLOUT_STEPS // args.num_envs,
                  policy_kwargs=dict(activation_fn=torch.nn.ReLU,
                                     net_arch=dict(pi=POLICY_HIDDEN, vf=POLICY_HIDDEN)),
                  **PPO_KWARGS)

  eval_env = gym.make(ENV_ID)
  curve: list[dict] = []
  loop_origin = [None]

  def evaluate(iteration):
    if curve and curve[-1]["agent_steps"] == agent.num_timesteps:
      return  # the same policy was just evaluated
    t_train, t_loop = clock.now(), (clock.now() - loop_origin[0]
                                    if loop_origin[0] is not None else None)
    t0 = time.time()
    with clock.paused():
      eps = [run_episode(agent.policy, eval_env, 10_000 + args.seed + e,
                         args.eval_action) for e in range(args.eval_episodes)]
    row = {"iteration": iteration, "agent_steps": int(agent.num_timesteps),
           "env_steps": int(venv.count), "time_s": t_train, "loop_s": t_loop,
           "eval_s": time.time() - t0}
    for key in ("seals_return", "gym_return", "healthy_fraction", "forward_speed"):
      row[key] = float(np.mean([e[key] for e in eps]))
    row["reward_check_gap"] = max(e["reward_check_gap"] for e in eps)
    curve.append(row)
    print(f"imitation seed {args.seed}: iteration {iteration} agent steps {row['agent_steps']} "
          f"seals {row['seals_return']:.0f} gym {row['gym_return']:.0f} "
          f"healthy {row['healthy_fraction']:.2f} at {t_train:.0f}s", file=sys.stderr, flush=True)

  state = {"iteration": 0}

  class EvalInsideAgentTraining(BaseCallback):
    """Evaluates at the start of a rollout (just after a PPO update) every ``eval_every``."""

    def __init__(self):
      super().__init__()
      self.next_at = args.eval_every

    def _on_rollout_start(self) -> None:
      if args.eval_every and self.model.num_timesteps >= self.next_at:
        evaluate(state["iteration"])
        while self.next_at <= self.model.num_timesteps:
          self.next_at += args.eval_every

    def _on_step(self) -> bool:
      return True

  inner_eval = EvalInsideAgentTraining()

  class TrainerWithEvals(pc.AgentTrainer):
    def train(self, steps, **kwargs):
      n = self.buffering_wrapper.n_transitions
      if n:
        raise RuntimeError(f"{n} transitions left in the buffer")
      self.algorithm.learn(total_timesteps=steps, reset_num_timesteps=False,
                           callback=[self.log_callback, inner_eval], **kwargs)

  trainer = TrainerWithEvals(algorithm=agent, reward_fn=reward_net, venv=venv,
                             exploration_frac=0.0, rng=rng, custom_logger=logger)
  preference_model = pc.PreferenceModel(reward_net)
  reward_trainer = pc.BasicRewardTrainer(preference_model, pc.CrossEntropyRewardLoss(), rng=rng,
                                         epochs=3, custom_logger=logger)
  main_trainer = pc.PreferenceComparisons(
      trainer, reward_net, num_iterations=args.num_iterations,
      fragmenter=pc.RandomFragmenter(warning_threshold=0, rng=rng, custom_logger=logger),
      preference_gatherer=pc.SyntheticGatherer(rng=rng, custom_logger=logger),
      reward_trainer=reward_trainer, fragment_length=args.fragment_length,
      transition_oversampling=1, initial_comparison_frac=0.1, custom_logger=logger,
      allow_variable_horizon=False, query_schedule="hyperbolic")

  def after_iteration(i):
    evaluate(i)
    state["iteration"] = i + 1

  setup_s = clock.now()
  evaluate(-1)  # the initial policy
  loop_origin[0] = clock.now()
  stats = main_trainer.train(args.total_timesteps, args.comparisons, callback=after_iteration)
  loop_s = clock.now() - loop_origin[0]
  total_s = clock.now()
  venv.close()
  final = curve[-1]
  return {
      "side": "imitation", "seed": args.seed, "env": ENV_ID,
      "imitation": imitation.__version__, "stable_baselines3": sb3.__version__,
      "gymnasium": gym.__version__, "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
      "settings": {"total_timesteps": args.total_timesteps, "comparisons": args.comparisons,
                   "num_iterations": args.num_iterations,
                   "fragment_length": args.fragment_length, "num_envs": args.num_envs,
                   "parallel_envs": args.parallel, "ppo_rollout_steps": PPO_ROLLOUT_STEPS,
                   "ppo": PPO_KWARGS, "policy_hidden": POLICY_HIDDEN,
                   "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
                   "eval_action": args.eval_action},
      "started_unix": STARTED_UNIX,
      "setup_s": setup_s, "loop_s": loop_s, "total_s": total_s,
      "eval_s_excluded": clock.paused_s,
      "labels": len(main_trainer.dataset), "agent_steps": int(agent.num_timesteps),
      "env_steps": int(venv.count),
      "env_steps_per_s_loop": venv.count / loop_s if loop_s > 0 else None,
      "reward_accuracy": stats.get("reward_accuracy"),
      "final": {k: final[k] for k in ("seals_return", "gym_return", "healthy_fraction",
                                      "forward_speed")},
      "curve": curve,
  }


if __name__ == "__main__":
  main()
