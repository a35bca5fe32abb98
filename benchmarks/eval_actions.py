"""How does a finished run's policy score when it acts without noise by each rule? An offline
re-evaluation, a minute on a CPU.

A Gaussian policy whose samples the env clips to the action box [-1, 1] has two natural
noiseless actions (``ppo.EVAL_ACTIONS``): ``clip_mean``, clip(mean), the median of the control
the physics receives (SB3's, imitation's and brax's rule), and ``mean_applied``, E[clip(a)],
the mean of that control. Where PPO has pushed the mean past the box while its noise still
reaches inside it, the two differ: clip(mean) is then the box's corner at every step.

From a run directory (config.json and the newest checkpoint) it evaluates the policy of every
run in the stack (seeds x teachers) by each rule, with the run's own evaluation keys, episode
count and length (so the run's own rule reproduces its final evaluation), and prints JSON: per
rule and per seed the return under Gym's termination rules, the seals-style return, the
healthy-step fraction (mean and worst episode), the step at which Gym would end the worst
episode and the number of episodes Gym would not end at all; IQM with a 95% bootstrap interval over seeds; and the per-seed paired difference of
the Gym-rules return (``mean_applied`` - ``clip_mean``) with its IQM and interval.

  python benchmarks/eval_actions.py RUN_DIR [--episodes 10]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import numpy as np  # noqa: E402

from rlhp_jax import checkpoint, config_errors, core, ppo, stats  # noqa: E402


def per_seed(ev: ppo.Evaluation, length: int) -> dict:
  """Per-run scores from an evaluation with leaves [runs, episodes, ...] of ``length``-step
  episodes."""
  gym, healthy = np.asarray(ev.gym_return), np.asarray(ev.healthy_fraction)
  return {"gym_return": gym.mean(1), "gym_return_worst_episode": gym.min(1),
          "seals_return": np.asarray(ev.seals_return).mean(1),
          "healthy_fraction": healthy.mean(1), "healthy_fraction_worst_episode": healthy.min(1),
          "gym_length_worst_episode": np.asarray(ev.gym_length).min(1),
          "episodes_upright": (np.asarray(ev.gym_length) == length).sum(1)}


def evaluate_rules(run_dir: str, episodes: int | None = None) -> dict:
  restored = checkpoint.restore_run(run_dir)
  cfg = restored.config
  system = core.RLHP(cfg)
  params = restored.state.ppo.params                     # [runs, ...]
  runs = int(np.asarray(restored.state.ppo.env_steps).shape[0])
  keys = core.eval_keys(cfg, runs)
  n = episodes or cfg.run.eval_episodes
  out = {"benchmark": "eval_actions", "experiment": cfg.name, "checkpoint": restored.step,
         "runs": runs, "episodes": n, "episode_length": cfg.run.eval_episode_length,
         "run_eval_action": cfg.run.eval_action, "rules": {}}
  scores = {}
  for rule in ppo.EVAL_ACTIONS:
    evaluate = jax.jit(jax.vmap(lambda p, k: ppo.evaluate(
        system.agent, system.env, p, k, n, cfg.run.eval_episode_length, action_rule=rule)))
    scores[rule] = per_seed(evaluate(params, keys), cfg.run.eval_episode_length)
    out["rules"][rule] = {name: stats.summarize(x) for name, x in scores[rule].items()}
  diff = scores["mean_applied"]["gym_return"] - scores["clip_mean"]["gym_return"]
  out["gym_return_difference"] = {"of": "mean_applied - clip_mean, per seed (paired)",
                                  **stats.summarize(diff)}
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir")
  p.add_argument("--episodes", type=int, default=None,
                 help="evaluation episodes per seed (default: the run's run.eval_episodes)")
  args = p.parse_args(argv)
  if args.episodes is not None and args.episodes < 1:
    print("eval_actions: --episodes must be at least 1", file=sys.stderr)
    return 2
  return config_errors.print_json_or_refuse(
      "eval_actions", lambda: evaluate_rules(args.run_dir, args.episodes),
      (checkpoint.CheckpointError,))


if __name__ == "__main__":
  sys.exit(main())
