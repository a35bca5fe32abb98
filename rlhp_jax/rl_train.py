"""PPO on the task's true reward: the baseline that preference learning is measured against.

Host loop over a jitted, seed-vmapped chunk of ``run.iterations_per_call`` PPO iterations;
progress, metrics, evaluation, plot and video happen between chunks.
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlhp_jax import ppo, report
from rlhp_jax.envs import hopper
from rlhp_jax.experiment import ExperimentConfig


def make_agent(cfg: ExperimentConfig, num_iterations: int) -> ppo.Agent:
  updates = num_iterations * cfg.ppo.num_epochs * cfg.ppo.num_minibatches
  return ppo.Agent(cfg.ppo, hopper.OBS_SIZE, hopper.ACTION_SIZE, total_updates=updates)


def num_iterations(cfg: ExperimentConfig) -> int:
  """Iterations covering total_env_steps, rounded up to whole jitted chunks."""
  k = cfg.run.iterations_per_call
  return k * math.ceil(cfg.run.total_env_steps / (cfg.ppo.batch_size * k))


def make_chunk(agent: ppo.Agent, env: hopper.Hopper, length: int):
  """state -> (state, metrics[length]): ``length`` PPO iterations on the true reward."""
  def body(state, _):
    state, _, metrics = ppo.train_step(agent, env, state, ppo.true_reward_fn)
    return state, metrics
  return lambda state: jax.lax.scan(body, state, length=length)


def seed_keys(cfg: ExperimentConfig) -> jax.Array:
  return jax.vmap(jax.random.PRNGKey)(jnp.arange(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds))


def train(cfg: ExperimentConfig, run_dir: str, log=print) -> dict:
  """Trains ``run.num_seeds`` seeds in one compile; writes metrics, plot and video to run_dir."""
  env = hopper.make(cfg.env)
  n_iter = num_iterations(cfg)
  agent = make_agent(cfg, n_iter)
  k = cfg.run.iterations_per_call
  init = jax.jit(jax.vmap(functools.partial(ppo.init_state, agent, env)))
  chunk = jax.jit(jax.vmap(make_chunk(agent, env, k)))
  evaluate = jax.jit(jax.vmap(functools.partial(ppo.evaluate, agent, env,
                                                num_episodes=cfg.run.eval_episodes)))
  state = init(seed_keys(cfg))
  metrics_log = report.MetricsLog(run_dir)
  progress = report.Progress(n_iter * cfg.ppo.batch_size,
                             {"train/episode_return": "train return",
                              "eval/return": "eval return"})
  log(f"training {cfg.name}: {cfg.run.num_seeds} seed(s) x {n_iter} iterations x "
      f"{cfg.ppo.batch_size} env steps (compiling first...)")
  t_start = time.perf_counter()
  next_eval = cfg.run.eval_every
  eval_key = jax.random.PRNGKey(10_000 + cfg.run.seed)
  compile_s = None
  for i in range(n_iter // k):
    t0 = time.perf_counter()
    state, metrics = chunk(state)
    metrics = jax.device_get(metrics)
    dt = time.perf_counter() - t0
    if compile_s is None:
      compile_s = dt  # first call: compile + run
    steps = int(np.asarray(state.env_steps)[0])
    row = {"env_steps": steps, "iteration": (i + 1) * k,
           "wall_s": time.perf_counter() - t_start,
           "steps_per_s": cfg.run.num_seeds * k * cfg.ppo.batch_size / dt}
    row.update({key: _chunk_mean(key, val) for key, val in metrics.items()})
    if steps >= next_eval or i == n_iter // k - 1:
      returns, _, _ = evaluate(state.params, jax.random.split(eval_key, cfg.run.num_seeds))
      row["eval/return"] = np.asarray(returns).mean(-1)   # [seeds]
      next_eval += cfg.run.eval_every
    metrics_log.write(row)
    progress(steps, row)
  wall = time.perf_counter() - t_start
  returns, lengths, trace = evaluate(state.params, jax.random.split(eval_key, cfg.run.num_seeds))
  returns = np.asarray(returns)
  summary = {"name": cfg.name, "env_steps": int(np.asarray(state.env_steps)[0]),
             "num_seeds": cfg.run.num_seeds, "wall_s": wall, "first_call_s": compile_s,
             "eval_return_per_seed": returns.mean(-1).tolist(),
             "eval_return_mean": float(returns.mean()),
             "eval_episode_length_mean": float(np.asarray(lengths).mean())}
  report.plot_learning_curve(metrics_log.rows, os.path.join(run_dir, "learning_curve.png"),
                             title=f"{cfg.name}: true return",
                             series={"eval/return": "eval (deterministic)",
                                     "train/episode_return": "train episodes"})
  if cfg.run.video:
    summary["video"] = write_policy_video(cfg, run_dir, trace)
  return summary


def _chunk_mean(key, values):
  """Mean over the chunk's iterations, per seed ([seeds, k] -> [seeds]); episode returns average
  only over iterations in which an episode ended."""
  values = np.asarray(values, float)
  if key == "train/episode_return":
    values = np.where(values == 0, np.nan, values)
    with np.errstate(all="ignore"):
      out = np.nanmean(values, axis=-1)
    return [None if np.isnan(x) else float(x) for x in out]
  return values.mean(-1)


def write_policy_video(cfg: ExperimentConfig, run_dir: str, trace) -> str | None:
  """Renders seed 0's first evaluation episode to ``policy.mp4``; a missing GL backend is
  reported and skipped, never fatal to a finished run."""
  from rlhp_jax import render
  qpos, _, alive = (np.asarray(x)[0] for x in trace)
  qpos = qpos[alive.astype(bool)]
  path = os.path.join(run_dir, "policy.mp4")
  try:
    frames = render.render_clips(hopper.ASSET, [qpos], cfg.run.video_width,
                                 cfg.run.video_height)[0]
  except render.RenderError as e:
    print(f"video skipped: {e}")
    return None
  render.write_video(path, frames, fps=1.0 / cfg.env.dt)
  return path
