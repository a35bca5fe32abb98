"""The drivers: one run skeleton over the core, whose label step is the only difference between
synthetic and external labels. Host side.

    run       init (or resume from the last checkpoint) -> per step: label step -> metrics row
              -> evaluation every ``run.eval_every`` env steps -> checkpoint -> final evaluation,
              summary, curve and video
    train     synthetic labels: a step is ``run.iterations_per_call`` iterations in one jitted
              ``vmap(scan(iteration))`` over all seeds x teacher settings
    train_external
              external labels: a step is one iteration, jitted ``collect`` -> ``gatherer.label``
              on the host -> jitted ``learn``; one run

Both lay their runs out with ``layout.Layout`` (the external run's envs split where the rule
says so). Without a run directory nothing is written: rows go to ``progress_fn(env_steps,
row)`` only, so benchmarks and notebooks can drive a run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from rlhp_jax import checkpoint, core, preferences, report, summary, teachers
from rlhp_jax.experiment import ExperimentConfig
from rlhp_jax.layout import BackgroundEval, Layout

log = logging.getLogger(__name__)

PROGRESS_KEYS = {"train/episode_return": "train", "eval/return": "task",
                 "eval/seals_return": "seals", "eval/gym_return": "gym",
                 "eval/healthy_fraction": "healthy", "prefs/labels": "labels",
                 "reward/true_corr": "corr"}


class Gatherer(Protocol):
  """Anything that labels queried pairs on the host (Toloka, a web page, a synthetic teacher)."""

  def label(self, query: core.Query, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """query: one run's ``Query`` with numpy leaves (pairs [P, 2, L, ...], mask [P]). Returns
    (label [P] in [0, 1], valid [P] bool) for the masked pairs. A gatherer may also define
    ``close()``: the driver calls it when the run ends."""


class SyntheticGatherer:
  """The synthetic teacher behind the external interface (same labels as the jitted driver)."""

  def __init__(self, teacher: teachers.TeacherConfig):
    self._teach = jax.jit(lambda *a: teachers.teach(teacher.params(), *a))

  def label(self, query: core.Query, iteration: int):
    label, valid = self._teach(jnp.asarray(query.pairs.true_reward),
                               jnp.asarray(query.teacher_key), jnp.asarray(query.mask),
                               jnp.asarray(query.pairs.counted))
    return np.asarray(label), np.asarray(valid)


@dataclasses.dataclass(frozen=True)
class Compiled:
  """The core's functions over a stack of runs, jitted for a layout (compiled on first call):
  init(keys [runs, 2]) -> state; chunk(state, teacher) -> (state, Metrics [runs, k]);
  collect(state) -> (state, Query [runs, ...], Metrics [runs]); learn(state, query, label
  [runs, P], valid [runs, P]) -> (state, Metrics [runs]); evaluate(state, keys) -> Evaluation
  [runs, E, ...]."""

  layout: Layout
  state_sharding: Any
  init: Callable
  chunk: Callable
  collect: Callable
  learn: Callable
  evaluate: Callable


def compile_runs(system: core.RLHP, keys: jax.Array, devices=None) -> Compiled:
  """Lays ``len(keys)`` runs out over ``devices`` (default: the backend's) and jits the core."""
  layout = Layout.choose(len(keys), system.cfg.ppo.num_envs,
                         jax.devices() if devices is None else devices)
  if layout.gather_rollouts:
    system = system.laid_out(layout.whole)
  st = layout.state(core.env_batched(jax.eval_shape(system.init_runs, keys)))
  pr = layout.per_run
  return Compiled(
      layout, st, init=layout.jit(system.init_runs, (pr,), st),
      chunk=layout.jit(jax.vmap(system.chunk), (st, pr), (st, pr)),
      collect=layout.jit(jax.vmap(system.collect), (st,), (st, pr, pr)),
      learn=layout.jit(jax.vmap(system.learn), (st, pr, pr, pr), (st, pr)),
      evaluate=layout.jit(jax.vmap(system.evaluate), (st, pr), pr))


def chunk_row(metrics: core.Metrics) -> dict:
  """A step's metrics ([runs, k] leaves) as per-run lists: ``mean`` over the k iterations
  skipping NaN (None where every iteration was NaN), ``last`` the k-th value."""
  row = {key: np.asarray(val)[:, -1].tolist() for key, val in metrics.last.items()}
  for key, val in metrics.mean.items():
    with np.errstate(all="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore", category=RuntimeWarning)
      out = np.nanmean(np.asarray(val, float), axis=1)
    row[key] = np.where(np.isnan(out), None, out).tolist()
  return row


def nonfinite_runs(state: core.RLHPState) -> list[int]:
  """Runs (indices along the leading axis) whose policy or reward parameters hold a NaN or inf.
  Such a run's later metrics and evaluations are NaN; its vmapped neighbours carry on."""
  leaves = jax.tree.leaves(jax.device_get((state.ppo.params, state.reward.params)))
  bad = np.zeros(np.shape(leaves[0])[0], bool)
  for leaf in leaves:
    leaf = np.asarray(leaf)
    bad |= ~np.isfinite(leaf.reshape(leaf.shape[0], -1)).all(axis=1)
  return np.flatnonzero(bad).tolist()


def run(system: core.RLHP, compiled: Compiled, keys: jax.Array, label_step, *,
        iterations_per_step: int, checkpoint_every_steps: int, title: str, teacher_configs,
        run_dir: str | None = None, resume: bool = False, progress_fn=None,
        stop_after_steps: int | None = None) -> dict | None:
  """The run skeleton. ``label_step(state, step) -> (state, Metrics [runs, k])`` advances all
  runs by ``iterations_per_step`` iterations. A checkpoint's step is the number of steps done.
  ``stop_after_steps`` ends early, as a kill would (returns None). Returns the summary."""
  cfg, layout = system.cfg, compiled.layout
  env_steps_per_step = iterations_per_step * system.iteration_env_steps
  num_steps = system.num_iterations // iterations_per_step
  n_runs = len(keys)
  eval_keys = layout.put(core.eval_keys(cfg, n_runs), layout.per_run)
  t_start = time.perf_counter()
  state = compiled.init(keys)
  ckpt, metrics_log, rows, start = None, None, [], 0
  if run_dir is not None:
    ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"))
    metrics_log = report.MetricsLog(run_dir)
    if resume and ckpt.latest() is not None:
      start, state = ckpt.restore(state)
      state = layout.put(state, compiled.state_sharding)
      metrics_log.truncate(lambda row: row["chunk"] < start)
      log.info(f"resumed {run_dir} at iteration {start * iterations_per_step}/"
               f"{system.num_iterations}")
    rows = metrics_log.rows
  progress_fn = progress_fn or report.Progress(num_steps * env_steps_per_step, PROGRESS_KEYS)
  log.info(f"{cfg.name}: {n_runs} run(s) ({title}{layout.describe()}) x "
           f"{system.num_iterations} iterations x {system.iteration_env_steps} env steps; "
           "compiling...")
  eval_every = max(1, round(cfg.run.eval_every / env_steps_per_step))
  evaluator = BackgroundEval(layout, compiled.evaluate, jax.vmap(system.evaluate_policy),
                             lambda s: s.ppo.params, eval_keys, summary.eval_row, state)
  last_train = next((r for r in reversed(rows) if "steps_per_s" in r), {})
  warned: set[int] = set()

  def warn_nonfinite(state, env_steps):
    new = [i for i in nonfinite_runs(state) if i not in warned]
    if new:
      warned.update(new)
      log.warning(f"run(s) {new} have non-finite parameters at {env_steps} env steps; their "
                  "metrics and returns are NaN from here on (summary.json: nonfinite_runs)")

  def write(new_rows):
    for r in new_rows:
      if metrics_log is not None:
        metrics_log.write(r)
      else:
        rows.append(report.to_python(r))
      progress_fn(r["env_steps"], r)

  for c in range(start, num_steps):
    t0 = time.perf_counter()
    state, metrics = label_step(state, c)
    metrics = jax.device_get(metrics)
    dt = time.perf_counter() - t0
    stamp = {"chunk": c, "iteration": (c + 1) * iterations_per_step,
             "env_steps": int(np.asarray(state.ppo.env_steps)[0]),
             "wall_s": time.perf_counter() - t_start, "time": time.time(),
             "eval_s": evaluator.inline_s}
    last_train = {**stamp, "steps_per_s": n_runs * env_steps_per_step / dt,
                  **chunk_row(metrics)}
    write([last_train] + evaluator.ready())
    last = c == num_steps - 1
    if (c + 1) % eval_every == 0 and not last:
      warn_nonfinite(state, stamp["env_steps"])
      write(evaluator.submit(state, stamp))
    stopping = stop_after_steps is not None and c + 1 - start >= stop_after_steps
    if ckpt is not None and ((c + 1) % checkpoint_every_steps == 0 or last or stopping):
      ckpt.save(c + 1, state)
    if stopping:
      return None
  write(evaluator.wait())
  warn_nonfinite(state, int(np.asarray(state.ppo.env_steps)[0]))
  done_at, wall = time.time(), time.perf_counter() - t_start  # evaluation is not training time
  inline_s = evaluator.inline_s   # before the final evaluation
  ev = evaluator.final(state)
  env_steps = int(np.asarray(state.ppo.env_steps)[0])
  final = {**{k: last_train[k] for k in ("chunk", "iteration") if k in last_train},
           "env_steps": env_steps, "wall_s": wall, "time": done_at, "final": True,
           "eval_s": inline_s,
           **summary.eval_row(ev)}
  write([final])
  result = summary.summarize(cfg, ev, env_steps=env_steps,
                             labels_per_run=jax.device_get(state.buffer.count),
                             last_row=last_train, teacher_configs=teacher_configs, wall=wall)
  result["nonfinite_runs"] = nonfinite_runs(state)
  result["equal_labels_per_run"] = np.asarray(
      jax.device_get(jax.vmap(preferences.equal_labels)(state.buffer))).tolist()
  if run_dir is not None:
    summary.write_files(cfg, run_dir, rows, ev, result, system.preference_learning)
  return result


def train(cfg: ExperimentConfig, run_dir: str | None = None, teacher_configs=None,
          resume: bool = False, stop_after_chunks: int | None = None, progress_fn=None,
          devices=None) -> dict | None:
  """Synthetic labels: all seeds x teacher settings in one compile, ``run.iterations_per_call``
  iterations per step, a checkpoint every ``run.checkpoint_every`` env steps."""
  system = core.RLHP(cfg)
  teacher_configs = list(teacher_configs or [cfg.teacher])
  keys = core.run_keys(cfg, len(teacher_configs))
  compiled = compile_runs(system, keys, devices)
  teacher = compiled.layout.put(
      jax.tree.map(lambda x: jnp.repeat(x, cfg.run.num_seeds, axis=0),
                   teachers.stack(teacher_configs)), compiled.layout.per_run)
  k = cfg.run.iterations_per_call
  every = max(1, round(cfg.run.checkpoint_every / (k * system.iteration_env_steps)))
  return run(system, compiled, keys, lambda state, _: compiled.chunk(state, teacher),
             iterations_per_step=k, checkpoint_every_steps=every,
             title=f"{len(teacher_configs)} teacher(s) x {cfg.run.num_seeds} seed(s)",
             teacher_configs=teacher_configs, run_dir=run_dir, resume=resume,
             progress_fn=progress_fn, stop_after_steps=stop_after_chunks)


def train_external(cfg: ExperimentConfig, run_dir: str | None, gatherer: Gatherer,
                   resume: bool = False, progress_fn=None, devices=None) -> dict:
  """External labels: one run, a checkpoint after every iteration. A restarted run recomputes
  the same query for the interrupted iteration (same key), so a gatherer that stores answers
  by iteration never pays twice. The gatherer is closed when the run ends."""
  system = core.RLHP(cfg)
  keys = core.run_keys(cfg, 1)[:1]
  compiled = compile_runs(system, keys, devices)

  def label_step(state, it: int):
    state, query, metrics = compiled.collect(state)
    host = jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(query))
    if host.mask.any():
      label, valid = gatherer.label(host, it)
    else:
      label, valid = np.zeros(host.mask.shape, np.float32), np.zeros(host.mask.shape, bool)
    state, learned = compiled.learn(state, query, jnp.asarray(label, jnp.float32)[None],
                                    jnp.asarray(valid, bool)[None])
    return state, jax.tree.map(lambda x: x[:, None], metrics.merge(learned))

  try:
    return run(system, compiled, keys, label_step, iterations_per_step=1,
               checkpoint_every_steps=1, title=f"labels: {cfg.labels}",
               teacher_configs=[cfg.teacher], run_dir=run_dir, resume=resume,
               progress_fn=progress_fn)
  finally:
    close = getattr(gatherer, "close", None)
    if close is not None:
      close()
