"""The tiny run the end-to-end tests share: one override list, so their jitted programs have the
same shapes (and come from the session's compilation cache) and each test stays seconds long.

Shapes: 8 envs x 16 steps per rollout, one rollout per iteration, 2 iterations per jitted call,
fragments of 8 steps, 24 labels of which 6 initial, 4 pairs per iteration out of 16 candidates,
a 2-member reward ensemble, evaluation episodes of 100 steps.
"""

from __future__ import annotations

SHAPES = ["--env.episode-length", "100", "--ppo.num-envs", "8", "--ppo.unroll-length", "16",
          "--ppo.num-minibatches", "2", "--ppo.num-epochs", "2", "--prefs.fragment-length", "8",
          "--prefs.total-labels", "24", "--prefs.initial-fraction", "0.25",
          "--prefs.pairs-per-iteration", "4",
          "--prefs.oversample", "4", "--prefs.rollouts-per-iteration", "1",
          "--reward.ensemble-size", "2",
          "--reward.steps-per-iteration", "4", "--reward.batch-size", "8",
          "--run.iterations-per-call", "2",
          "--run.eval-episodes", "2", "--run.eval-episode-length", "100",
          "--run.eval-every", "100000"]
"""Overrides that fix the shapes of the jitted programs (and the label budget)."""

OUTPUTS = ["--run.video-width", "64", "--run.video-height", "48",
           "--clips.width", "64", "--clips.height", "48"]
"""Small pictures: the final policy's video and the clips of queried pairs."""


def args(total_env_steps: int = 512, video: bool = False, *more: str) -> list[str]:
  """The override list (``--section.field value`` ...) of a tiny run of ``total_env_steps``
  env steps (512: 4 iterations of 128), with or without the final video; ``more`` overrides
  come last (they win)."""
  return [*SHAPES, "--run.total-env-steps", str(total_env_steps), *OUTPUTS,
          *([] if video else ["--run.no-video"]), *more]


def config(base, total_env_steps: int = 512, video: bool = False, *more: str):
  """``base`` (an ExperimentConfig) with the tiny overrides applied; see ``args``."""
  from rlhp_jax import experiment
  return experiment.override(base, args(total_env_steps, video, *more))
