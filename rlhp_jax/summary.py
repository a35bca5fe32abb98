"""The end of a run: evaluation rows, the final summary, learning curve and policy video. Host.

Evaluations arrive as ``ppo.Evaluation`` pytrees with leaves [runs, E, ...] (E episodes per
run); everything here reduces them per run and writes files.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from rlhp_jax import report, teachers

log = logging.getLogger(__name__)

EVAL_KEYS = {"eval/return": "task_return", "eval/seals_return": "seals_return",
             "eval/gym_return": "gym_return", "eval/healthy_fraction": "healthy_fraction",
             "eval/forward_speed": "forward_speed", "eval/gym_length": "gym_length"}
"""Metrics row keys of an evaluation (per run: mean over episodes) and their ``Evaluation``
fields; ``eval/return`` is the task's own return. ``eval/gym_length`` is the step at which
Gym's termination rules would have ended the episode (its first unhealthy step; the episode's
length when it never leaves the healthy range): where a hopper with a high healthy fraction
loses its Gym-rules return."""

CURVE_SERIES = {"eval/return": "task return", "eval/seals_return": "seals-style return",
                "eval/gym_return": "Gym-rules return",
                "train/episode_return": "train episodes (task)"}

VERSIONED_PACKAGES = ("jax", "jaxlib", "mujoco", "mujoco-mjx", "flax", "optax", "numpy")
"""Packages whose versions change a run's floating-point path: the same config and seed gave a
policy that hops (seals-style 3302) under one set of them and one that stands (1238) under the
next, so every summary names them."""

POLICY_VIDEO_FPS = 30.0
"""Policy videos draw every k-th env step so they play in real time at about this rate. 30, not
60: the CPU renderer drew the main job's 1000-step episode at 62.5 fps in ~30 s of its ~7.5 min
end to end; at 31.25 fps a hop (~0.4 s) still spans a dozen frames."""


def eval_row(ev) -> dict:
  """Per-run means of an evaluation ([runs, E] leaves) for a metrics row, plus the worst
  episode's healthy fraction and its earliest Gym termination."""
  row = {key: np.asarray(getattr(ev, f)).mean(-1) for key, f in EVAL_KEYS.items()}
  row["eval/healthy_fraction_min"] = np.asarray(ev.healthy_fraction).min(-1)
  row["eval/gym_length_min"] = np.asarray(ev.gym_length).min(-1)
  return row


def teacher_name(t: teachers.TeacherConfig) -> str:
  for name, preset in teachers.PRESETS.items():
    if preset == t:
      return name
  return str(t)


def flips(ev) -> tuple[np.ndarray, np.ndarray]:
  """Flips completed and flips landed per episode, [runs, E] each (from the qpos traces)."""
  import jax

  from rlhp_jax.envs import tasks
  per_episode = lambda f, *xs: np.asarray(jax.vmap(jax.vmap(f, in_axes=1))(*xs))
  qpos = ev.qpos
  return (per_episode(tasks.flips_completed, qpos[..., 2]),
          per_episode(tasks.flips_landed, qpos[..., 2], qpos[..., 1]))


CPU_FEATURES = ("avx2", "avx512f", "fma")
"""Vector extensions XLA:CPU compiles for when the host has them: the same program can round
differently on another host. Session 30 ran the commit of session 27's main-job run (seed 0,
the same package versions) to Gym-rules 3540 where session 27 had got 128; the host is the
likeliest difference, and summaries before session 30 did not name it."""
CPU_FEATURE_PREFIXES = ("avx512", "amx", "avx_vnni")
"""Every flag with one of these prefixes is recorded too. Sessions 39 and 40 ran the same
commit on two hosts that both report "AMD EPYC" with avx2, avx512f and fma (session 40: family
25, model 17, with avx512_bf16, avx512_vnni and more), and seed 0 ended at 946 / 86 on one and
1067 / 1067 on the other (seals-style / Gym-rules): three features could not tell them apart."""


def parse_cpuinfo(text: str) -> dict:
  """The first processor's model name, family, model number and stepping, and which vector
  extensions it has: ``CPU_FEATURES`` and every flag starting with ``CPU_FEATURE_PREFIXES``
  (sorted). Fields missing from ``text`` are empty strings."""
  first = text.split("\n\n", 1)[0]
  field = lambda name: next((line.split(":", 1)[1].strip() for line in first.splitlines()
                             if line.split(":", 1)[0].strip() == name), "")
  flags = set(field("flags").split())
  extra = sorted(f for f in flags if f.startswith(CPU_FEATURE_PREFIXES) and f not in CPU_FEATURES)
  return {"model": field("model name"), "family": field("cpu family"),
          "model_number": field("model"), "stepping": field("stepping"),
          "features": [f for f in CPU_FEATURES if f in flags] + extra}


def host_cpu() -> dict:
  """``parse_cpuinfo`` of this host's /proc/cpuinfo (empty where that is missing)."""
  try:
    with open("/proc/cpuinfo") as f:
      return parse_cpuinfo(f.read())
  except OSError:
    return {}


def software() -> dict:
  """What computed the run: the backend, its device count, the host CPU, the ``XLA_FLAGS`` it
  ran under (e.g. ``--xla_cpu_max_isa``, which changes the code XLA:CPU emits) and the versions
  of ``VERSIONED_PACKAGES`` (None where a package is missing)."""
  from importlib import metadata

  import jax
  versions = {}
  for name in VERSIONED_PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  return {"backend": jax.default_backend(), "devices": jax.device_count(), "cpu": host_cpu(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "versions": versions}


def summarize(cfg, ev, *, env_steps: int, labels_per_run, last_row: dict, teacher_configs,
              wall: float) -> dict:
  """The summary of a finished run: its config's names, the final evaluation per run (ev
  leaves [runs, E, ...]), the labels each run trained on and the reward model's last
  diagnostics (from the last training row)."""
  completed, landed = flips(ev)
  returns = np.asarray(ev.task_return)
  summary = {
      "name": cfg.name, "reward_source": cfg.reward_source, "task": cfg.env.task,
      "env_mode": cfg.env.mode, "env_steps": env_steps, "runs": len(returns),
      "wall_s": wall, "teachers": [teacher_name(t) for t in teacher_configs],
      "num_seeds": cfg.run.num_seeds,
      "eval_episodes": cfg.run.eval_episodes, "eval_episode_length": cfg.run.eval_episode_length,
      "eval_action": cfg.run.eval_action,
      "eval_return_per_run": returns.mean(-1).tolist(),
      "eval_return_mean": float(returns.mean()),
      "eval_seals_return_per_run": np.asarray(ev.seals_return).mean(-1).tolist(),
      "eval_gym_return_per_run": np.asarray(ev.gym_return).mean(-1).tolist(),
      "eval_gym_return_min_per_run": np.asarray(ev.gym_return).min(-1).tolist(),
      "eval_healthy_fraction_per_run": np.asarray(ev.healthy_fraction).mean(-1).tolist(),
      "eval_healthy_fraction_min_per_run": np.asarray(ev.healthy_fraction).min(-1).tolist(),
      "eval_forward_speed_per_run": np.asarray(ev.forward_speed).mean(-1).tolist(),
      "eval_gym_length_per_run": np.asarray(ev.gym_length).mean(-1).tolist(),
      "eval_gym_length_min_per_run": np.asarray(ev.gym_length).min(-1).tolist(),
      "flips_per_episode_per_run": completed.mean(-1).tolist(),
      "landed_flips_per_episode_per_run": landed.mean(-1).tolist(),
      "labels_per_run": np.asarray(labels_per_run).tolist(),
      "software": software(),
  }
  for key in ("reward/true_corr", "reward/val_accuracy", "reward/val_oracle_agreement"):
    if key in last_row:
      summary[key.replace("/", "_") + "_per_run"] = last_row[key]
  return summary


def write_files(cfg, run_dir: str, rows: list[dict], ev, summary: dict,
                preference_learning: bool) -> None:
  """The learning-curve PNG, the first run's first evaluation episode (``eval_qpos.npy``,
  re-rendered by ``rlhp-jax render``) and, with ``run.video``, the policy video (its path goes
  into ``summary["video"]``)."""
  report.plot_learning_curve(rows, os.path.join(run_dir, "learning_curve.png"),
                             title=f"{cfg.name}: returns of the deterministic policy",
                             series=CURVE_SERIES,
                             second_x="prefs/labels" if preference_learning else None,
                             fraction_key="eval/healthy_fraction")
  first = np.asarray(ev.qpos[0, :, 0])[np.asarray(ev.alive[0, :, 0]).astype(bool)]
  np.save(os.path.join(run_dir, "eval_qpos.npy"), first)
  if cfg.run.video:
    summary["video"] = write_policy_video(cfg, run_dir, first)


def write_policy_video(cfg, run_dir: str, qpos) -> str | None:
  """Renders one evaluation episode (qpos [L, 6]) to ``policy.mp4`` (real time) and a contact
  sheet of its frames to ``policy_frames.png``; a missing GL backend is reported and skipped,
  never fatal to a finished run. The episode is drawn in contiguous segments, one per core."""
  from rlhp_jax import render
  from rlhp_jax.envs import hopper
  path = os.path.join(run_dir, "policy.mp4")
  stride = max(1, round(1.0 / (cfg.env.dt * POLICY_VIDEO_FPS)))
  drawn = np.asarray(qpos)[::stride]
  segments = np.array_split(drawn, max(1, min(os.cpu_count() or 1, len(drawn))))
  try:
    frames = np.concatenate(render.render_clips(
        hopper.ASSET, segments, cfg.run.video_width, cfg.run.video_height,
        camera=render.FOLLOW, shadows=True))
  except render.RenderError as e:
    log.warning(f"video skipped: {e}")
    return None
  fps = 1.0 / (cfg.env.dt * stride)
  render.write_video(path, frames, fps=fps)
  render.write_contact_sheet(os.path.join(run_dir, "policy_frames.png"), frames, fps)
  return path
