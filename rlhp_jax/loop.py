"""The RLHP loop: one pure iteration and the two drivers over it.

One iteration (``RLHP.iteration``), all on the device:

    collect   ``prefs.rollouts_per_iteration`` x (rollout with the policy -> relabel with the
              reward ensemble -> PPO update; frozen while the initial share of labels is
              collected) -> candidate pairs cut within episodes of those rollouts -> keep the
              most-disagreed (or random) pairs                                    -> Query
    label     synthetic teacher on the pairs' oracle rewards (or an external gatherer)
    learn     append labelled pairs to the fixed-capacity buffer -> reward-ensemble SGD + L2 rule

Drivers:
  * synthetic: ``jit(vmap(scan(iteration)))`` over seeds and teacher settings (one compile for
    all), ``run.iterations_per_call`` iterations per call, progress between calls;
  * external: a Python loop of jitted ``collect`` -> ``gatherer.label(query)`` -> jitted
    ``learn``, for crowd or human labels.
With ``reward_source="true"`` the iteration is plain PPO on the oracle's reward (the baseline);
``"true_normalized"`` passes the oracle's reward through the learned reward's normalisation.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlhp_jax import (checkpoint, config_errors, fragments, ppo, preferences, report, reward_model,
                      teachers)
from rlhp_jax.envs import hopper, tasks
from rlhp_jax.experiment import ExperimentConfig


@struct.dataclass
class RLHPState:
  ppo: ppo.PPOState
  reward: reward_model.RewardState
  reward_norm: reward_model.RewardNorm   # running statistics of the reward PPO is given
  buffer: preferences.PreferenceBuffer
  requested: jax.Array      # [] int32, pairs queried so far (the label budget spent)
  rl_env_steps: jax.Array   # [] int32, env steps since RL started (after the initial labels)
  iteration: jax.Array      # [] int32
  key: jax.Array


@struct.dataclass
class Segment:
  """What a query needs of the iteration's rollouts: leaves [K * T, B], the K rollouts of each
  env laid end to end in time (they are consecutive in the env's life)."""

  obs: jax.Array
  action: jax.Array         # raw policy samples (fragments clip them)
  true_reward: jax.Array
  qpos: jax.Array
  qvel: jax.Array
  done: jax.Array


@struct.dataclass
class Query:
  """Pairs chosen by ``collect``: ``mask`` marks those asked for in this iteration."""

  pairs: fragments.FragmentPairs   # [P, 2, L, ...]
  mask: jax.Array                  # [P] bool
  disagreement: jax.Array          # [P]
  teacher_key: jax.Array
  learn_key: jax.Array


def tree_select(pred, on_true, on_false):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class RLHP:
  """Static parts of a run (env, agent, ensemble, configs) and its pure step functions."""

  def __init__(self, cfg: ExperimentConfig):
    self.cfg = cfg
    self.env = hopper.make(cfg.env)
    self.num_iterations = num_iterations(cfg)
    updates = self.num_iterations * cfg.ppo.num_epochs * cfg.ppo.num_minibatches
    self.agent = ppo.Agent(cfg.ppo, hopper.OBS_SIZE, hopper.ACTION_SIZE, total_updates=updates)
    self.ensemble = reward_model.RewardEnsemble(cfg.reward, hopper.OBS_SIZE, hopper.ACTION_SIZE)
    self.preference_learning = cfg.reward_source == "preferences"
    config_errors.require(self.warmup_iterations < self.num_iterations, "prefs.pairs_per_iteration",
                       f"collecting the initial {cfg.prefs.initial_labels} labels takes "
                       f"{self.warmup_iterations} iterations, the whole run has "
                       f"{self.num_iterations}; raise pairs_per_iteration or the env steps")

  # -- state ------------------------------------------------------------------------------
  def init(self, key: jax.Array) -> RLHPState:
    k_ppo, k_reward, key = jax.random.split(key, 3)
    p = self.cfg.prefs
    return RLHPState(
        ppo=ppo.init_state(self.agent, self.env, k_ppo),
        reward=self.ensemble.init(k_reward),
        reward_norm=reward_model.init_norm(
            self.cfg.reward.ensemble_size if self.preference_learning else 1),
        buffer=preferences.init_buffer(p.total_labels if self.preference_learning else 1,
                                       p.fragment_length, hopper.OBS_SIZE, hopper.ACTION_SIZE,
                                       self.cfg.reward.ensemble_size),
        requested=jnp.zeros((), jnp.int32), rl_env_steps=jnp.zeros((), jnp.int32),
        iteration=jnp.zeros((), jnp.int32), key=key)

  def init_runs(self, keys: jax.Array) -> RLHPState:
    """States of several runs stacked on a leading axis (seeds x teacher settings).

    Runs are initialised one after another (``lax.map``), not vmapped: a vmapped init makes
    the orthogonal initialisers one batched LAPACK QR, which XLA:CPU runs with a nested
    parallel loop that deadlocks its thread pool on small (2-core) machines. Init runs once,
    so nothing is lost."""
    return jax.lax.map(self.init, keys)

  # -- the iteration ------------------------------------------------------------------------
  def raw_learned_reward(self, reward_params, transitions) -> jax.Array:
    """Each member's reward of the applied (clipped) actions: [K, T, B]."""
    return self.ensemble.member_rewards(reward_params, transitions.obs,
                                        hopper.applied_action(transitions.action))

  def learned_reward(self, params_and_norm, transitions):
    """The reward PPO optimises: each member's reward normalised by its running statistics
    (updated with this batch first), averaged over members. Returns (rewards [T, B],
    (reward_params, norm))."""
    reward_params, norm = params_and_norm
    raw = self.raw_learned_reward(reward_params, transitions)
    norm = reward_model.update_norm(norm, raw, self.cfg.reward.normalization_rate)
    return reward_model.apply_norm(norm, raw), (reward_params, norm)

  def normalized_true_reward(self, norm, transitions):
    """The oracle's reward through exactly the learned reward's normalisation (one member):
    the baseline that isolates what normalising costs."""
    raw = transitions.true_reward[None]
    norm = reward_model.update_norm(norm, raw, self.cfg.reward.normalization_rate)
    return reward_model.apply_norm(norm, raw), norm

  def ppo_phase(self, ppo_state: ppo.PPOState, reward_fn, reward_params):
    """``prefs.rollouts_per_iteration`` PPO iterations (scan). Returns (ppo_state, Segment
    [K * T, B], metrics averaged over the K updates; the train return over episodes that
    ended, NaN when none did; reward_params after the K batches)."""
    def one(carry, _):
      s, rp = carry
      s, tr, m, rp = ppo.train_step(self.agent, self.env, s, reward_fn, rp)
      seg = Segment(obs=tr.obs, action=tr.action, true_reward=tr.true_reward, qpos=tr.qpos,
                    qvel=tr.qvel, done=tr.done)
      return (s, rp), (seg, m)

    (state, reward_params), (seg, m) = jax.lax.scan(
        one, (ppo_state, reward_params), length=self.rollouts_per_iteration)
    seg = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), seg)
    episodes = jnp.sum(m["train/episodes"])
    ended = jnp.sum(m["train/episode_return"] * m["train/episodes"])
    metrics = {k: jnp.mean(val) for k, val in m.items()}
    metrics["train/episodes"] = episodes
    metrics["train/episode_return"] = jnp.where(episodes > 0, ended / jnp.maximum(episodes, 1),
                                                jnp.nan)
    return state, seg, metrics, reward_params

  def collect(self, state: RLHPState):
    """Rollouts, PPO on the learned reward, and the pairs to query. Returns (state, query,
    metrics)."""
    p = self.cfg.prefs
    key, k_select, k_teach, k_learn = jax.random.split(state.key, 4)
    # Labels are due by the RL steps taken once this iteration's rollouts have run.
    n_request, warmup = preferences.pairs_to_request(
        p, state.requested, state.rl_env_steps + self.iteration_env_steps,
        self.rl_env_step_budget)
    new_ppo, seg, metrics, (_, norm) = self.ppo_phase(
        state.ppo, self.learned_reward, (state.reward.params, state.reward_norm))
    # While the initial labels are collected the policy stays the initial random one.
    frozen = state.ppo.replace(env_state=new_ppo.env_state, key=new_ppo.key,
                               env_steps=new_ppo.env_steps)
    new_ppo = tree_select(warmup, frozen, new_ppo)
    learned = self.raw_learned_reward(state.reward.params, seg).mean(0)
    metrics["reward/true_corr"] = reward_model.pearson(learned, seg.true_reward)
    member_returns = functools.partial(self.ensemble.fragment_returns, state.reward.params)
    pairs, score = fragments.select(k_select, seg, p.pairs_per_iteration, p.fragment_length,
                                    p.selection, p.oversample, member_returns)
    query = Query(pairs=pairs, mask=jnp.arange(p.pairs_per_iteration) < n_request,
                  disagreement=score, teacher_key=k_teach, learn_key=k_learn)
    metrics["prefs/warmup"] = warmup
    metrics["prefs/disagreement"] = jnp.mean(score)
    metrics["prefs/disagreement_spread"] = score[0] - score[-1]
    state = state.replace(
        ppo=new_ppo, key=key, iteration=state.iteration + 1, reward_norm=norm,
        rl_env_steps=state.rl_env_steps + jnp.where(warmup, 0, self.iteration_env_steps))
    return state, query, metrics

  def learn(self, state: RLHPState, query: Query, label: jax.Array, valid: jax.Array):
    """Stores the answered pairs and trains the reward ensemble. Returns (state, metrics)."""
    rc = self.cfg.reward
    k_add, k_train = jax.random.split(query.learn_key)
    answered = valid & query.mask
    buffer = preferences.add(state.buffer, query.pairs.obs, query.pairs.action, label, answered,
                             query.pairs.true_reward.sum(-1), k_add, rc.validation_fraction,
                             rc.bootstrap)
    reward_state, metrics = reward_model.train(self.ensemble, state.reward, buffer, k_train)
    metrics = {k: val for k, val in metrics.items() if not k.endswith("_member")}
    metrics["prefs/labels"] = buffer.count
    metrics["prefs/requested"] = state.requested + jnp.sum(query.mask)
    metrics["prefs/skipped"] = jnp.sum(query.mask & ~valid)
    return state.replace(buffer=buffer, reward=reward_state,
                         requested=state.requested + jnp.sum(query.mask)), metrics

  def iteration(self, state: RLHPState, teacher: teachers.TeacherParams):
    """One full synthetic iteration: collect -> teacher -> learn. Pure."""
    if not self.preference_learning:
      return self.true_reward_iteration(state)
    state, query, metrics = self.collect(state)
    label, valid = teachers.teach(teacher, query.pairs.true_reward, query.teacher_key,
                                  query.mask)
    state, learn_metrics = self.learn(state, query, label, valid)
    return state, {**metrics, **learn_metrics}

  def true_reward_iteration(self, state: RLHPState):
    reward_fn = (self.normalized_true_reward if self.cfg.reward_source == "true_normalized"
                 else ppo.true_reward_fn)
    new_ppo, _, metrics, norm = self.ppo_phase(state.ppo, reward_fn, state.reward_norm)
    return state.replace(ppo=new_ppo, iteration=state.iteration + 1, reward_norm=norm,
                         rl_env_steps=new_ppo.env_steps), metrics

  @property
  def rollouts_per_iteration(self) -> int:
    return self.cfg.prefs.rollouts_per_iteration

  @property
  def iteration_env_steps(self) -> int:
    """Env steps per iteration (all envs of one run)."""
    return self.rollouts_per_iteration * self.cfg.ppo.batch_size

  @property
  def warmup_iterations(self) -> int:
    """Iterations spent collecting the initial labels with the policy frozen."""
    if not self.preference_learning:
      return 0
    return math.ceil(self.cfg.prefs.initial_labels / self.cfg.prefs.pairs_per_iteration)

  @property
  def rl_env_step_budget(self) -> int:
    """Env steps of RL after the initial labels: the label schedule's time axis."""
    return (self.num_iterations - self.warmup_iterations) * self.iteration_env_steps

  def chunk(self, state: RLHPState, teacher: teachers.TeacherParams):
    """``run.iterations_per_call`` iterations (lax.scan); metrics stacked [k]."""
    return jax.lax.scan(lambda s, _: self.iteration(s, teacher), state,
                        length=self.cfg.run.iterations_per_call)

  def evaluate(self, state: RLHPState, key: jax.Array) -> ppo.Evaluation:
    return self.evaluate_policy(state.ppo.params, key)

  def evaluate_policy(self, params: ppo.AgentParams, key: jax.Array) -> ppo.Evaluation:
    return ppo.evaluate(self.agent, self.env, params, key,
                        num_episodes=self.cfg.run.eval_episodes,
                        length=self.cfg.run.eval_episode_length)


def num_iterations(cfg: ExperimentConfig) -> int:
  """Iterations covering total_env_steps, rounded up to whole jitted chunks."""
  k = cfg.run.iterations_per_call
  per_iteration = cfg.ppo.batch_size * cfg.prefs.rollouts_per_iteration
  return k * math.ceil(cfg.run.total_env_steps / (per_iteration * k))


EVAL_KEYS = {"eval/return": "task_return", "eval/seals_return": "seals_return",
             "eval/gym_return": "gym_return", "eval/healthy_fraction": "healthy_fraction",
             "eval/forward_speed": "forward_speed"}
"""Metrics row keys of an evaluation (per run: mean over episodes) and their ``Evaluation``
fields; ``eval/return`` is the task's own return."""

PROGRESS_KEYS = {"train/episode_return": "train", "eval/return": "task",
                 "eval/seals_return": "seals", "eval/gym_return": "gym",
                 "eval/healthy_fraction": "healthy", "prefs/labels": "labels",
                 "reward/true_corr": "corr"}


def eval_row(ev: ppo.Evaluation) -> dict:
  """Per-run means of an evaluation ([runs, E] leaves) for a metrics row, plus the worst
  episode's healthy fraction."""
  row = {key: np.asarray(getattr(ev, f)).mean(-1) for key, f in EVAL_KEYS.items()}
  row["eval/healthy_fraction_min"] = np.asarray(ev.healthy_fraction).min(-1)
  return row


# -- host side -------------------------------------------------------------------------------

MIN_ENVS_PER_DEVICE = 64
"""A single run's env batch is split over devices only if each gets at least this many envs."""


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a stack of runs lives on the default backend's devices (XLA:CPU: one host device
  per core, see ``rlhp_jax``'s ``__init__``; one GPU: nothing to split).

  * ``"runs"``: the runs axis (seeds x teacher settings) is split over the devices; runs never
    talk to each other, so each device simply runs its share.
  * ``"envs"``: too few runs to split (one seed, or an odd count on two cores): each run's
    batch of envs is split instead; the env steps run in parallel, the PPO and reward updates
    see the whole batch (XLA inserts the gathers). Only from ``MIN_ENVS_PER_DEVICE`` envs per
    device: below that the gathers cost more than the parallel steps save (2 cores, one seed:
    256 envs 1.52x faster split, 32 envs 0.6x).
  * ``"one device"``: nothing divides evenly, or there is one device.

  ``state`` is a pytree of shardings shaped like ``RLHPState`` (or None); ``per_run`` lays out
  the other per-run arrays: teacher parameters, keys, metrics.
  """

  kind: str
  devices: int
  state: Any = None
  per_run: Any = None

  @classmethod
  def choose(cls, state_like: "RLHPState", num_runs: int, num_envs: int) -> "Layout":
    devices = jax.devices()
    split = lambda n: max(d for d in range(1, len(devices) + 1) if n % d == 0)
    by_runs, by_envs = split(num_runs), split(num_envs)
    if by_runs > 1:
      mesh = Mesh(np.array(devices[:by_runs]), ("runs",))
      runs = NamedSharding(mesh, PartitionSpec("runs"))
      return cls("runs", mesh.size, jax.tree.map(lambda _: runs, state_like), runs)
    if by_envs > 1 and num_envs // by_envs >= MIN_ENVS_PER_DEVICE:
      mesh = Mesh(np.array(devices[:by_envs]), ("envs",))
      whole = NamedSharding(mesh, PartitionSpec())
      envs = NamedSharding(mesh, PartitionSpec(None, "envs"))  # env_state: [runs, envs, ...]
      state = jax.tree.map(lambda _: whole, state_like)
      state = state.replace(ppo=state.ppo.replace(
          env_state=jax.tree.map(lambda _: envs, state_like.ppo.env_state)))
      return cls("envs", mesh.size, state, whole)
    return cls("one device", 1)

  def jit(self, fn, in_shardings, out_shardings):
    if self.state is None:
      return jax.jit(fn)
    return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings)

  def put(self, tree, sharding):
    return tree if sharding is None else jax.device_put(tree, sharding)

  def describe(self) -> str:
    return "" if self.devices == 1 else f", {self.kind} split over {self.devices} devices"


class BackgroundEval:
  """Evaluates the policy while training goes on. A 1000-step evaluation is a long chain of
  small sequential steps (about as long as several training chunks on CPU); when the layout
  leaves a device idle (XLA:CPU: a spare core) the policy's parameters are copied there and
  evaluated asynchronously, and the result becomes a metrics row of its own once it is ready.
  Without a spare device it evaluates in line. Rows carry the chunk, env steps, ``wall_s`` and
  ``time`` of the moment the evaluated policy existed, so curves against wall-clock do not
  count evaluation as training time."""

  def __init__(self, system: "RLHP", layout: "Layout", evaluate, eval_keys):
    spare = jax.devices()[layout.devices:]
    self.device = spare[-1] if spare else None
    self.evaluate, self.keys, self.pending = evaluate, eval_keys, None
    if self.device is not None:
      self.evaluate = jax.jit(jax.vmap(system.evaluate_policy))
      self.keys = jax.device_put(jax.device_get(eval_keys), self.device)

  def submit(self, state: RLHPState, row: dict) -> list[dict]:
    """Starts evaluating ``state``'s policy; returns finished rows (in line: this one)."""
    if self.device is None:
      return [{**row, **eval_row(jax.device_get(self.evaluate(state, self.keys)))}]
    done = self.wait()
    params = jax.device_put(state.ppo.params, self.device)
    self.pending = (row, self.evaluate(params, self.keys))
    return done

  def ready(self) -> list[dict]:
    """The pending evaluation's row if it has finished, without waiting."""
    if self.pending is None or not all(x.is_ready() for x in jax.tree.leaves(self.pending[1])):
      return []
    return self.wait()

  def wait(self) -> list[dict]:
    if self.pending is None:
      return []
    row, ev = self.pending
    self.pending = None
    return [{**row, **eval_row(jax.device_get(ev))}]


def compile_runs(system: "RLHP", keys: jax.Array):
  """The synthetic driver's jitted functions over a stack of runs, laid out by ``Layout``:
  returns (layout, init(keys) -> state, chunk(state, teacher) -> (state, metrics),
  evaluate(state, keys) -> ppo.Evaluation with a leading runs axis)."""
  like = jax.eval_shape(system.init_runs, keys)
  layout = Layout.choose(like, len(keys), system.cfg.ppo.num_envs)
  st, per_run = layout.state, layout.per_run
  init = layout.jit(system.init_runs, (per_run,), st)
  chunk = layout.jit(jax.vmap(system.chunk), (st, per_run), (st, per_run))
  evaluate = layout.jit(jax.vmap(system.evaluate), (st, per_run), per_run)
  return layout, init, chunk, evaluate


def run_keys(cfg: ExperimentConfig, num_teachers: int) -> jax.Array:
  """One PRNG key per run; runs are teacher-major: run r = (teacher r // S, seed r % S)."""
  seeds = jnp.arange(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds)
  return jax.vmap(jax.random.PRNGKey)(jnp.tile(seeds, num_teachers))


class Gatherer(Protocol):
  """Anything that labels queried pairs on the host (Toloka, a web page, a synthetic teacher)."""

  def label(self, query: dict, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """query: host arrays of ``Query`` (pairs with obs/action/qpos/qvel/true_reward, mask,
    teacher_key). Returns (label [P] in [0, 1], valid [P] bool) for the masked pairs.
    A gatherer may also define ``close()``: the driver calls it when the run ends."""


class SyntheticGatherer:
  """The synthetic teacher behind the external interface (same labels as the jitted driver)."""

  def __init__(self, teacher: teachers.TeacherConfig):
    self._teach = jax.jit(functools.partial(teachers.teach, teacher.params()))

  def label(self, query: dict, iteration: int):
    label, valid = self._teach(jnp.asarray(query["pairs"]["true_reward"]),
                               jnp.asarray(query["teacher_key"]), jnp.asarray(query["mask"]))
    return np.asarray(label), np.asarray(valid)


def train(cfg: ExperimentConfig, run_dir: str, teacher_configs=None, resume: bool = False,
          log=print, stop_after_chunks: int | None = None) -> dict | None:
  """Synthetic driver: all seeds x teacher settings in one compile; checkpoints every chunk.
  ``stop_after_chunks`` ends the process-level loop early (as a kill would; returns None)."""
  system = RLHP(cfg)
  teacher_configs = list(teacher_configs or [cfg.teacher])
  teacher_params = teachers.stack(teacher_configs)
  n_teachers, n_seeds = len(teacher_configs), cfg.run.num_seeds
  n_runs = n_teachers * n_seeds
  keys = run_keys(cfg, n_teachers)
  layout, init, chunk, evaluate = compile_runs(system, keys)
  teacher_per_run = layout.put(
      jax.tree.map(lambda x: jnp.repeat(x, n_seeds, axis=0), teacher_params), layout.per_run)
  eval_keys = layout.put(jax.random.split(jax.random.PRNGKey(10_000 + cfg.run.seed), n_runs),
                         layout.per_run)
  k = cfg.run.iterations_per_call
  n_chunks = system.num_iterations // k
  t_start = time.perf_counter()
  state = init(keys)
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"))
  metrics_log = report.MetricsLog(run_dir)
  start_chunk = 0
  if resume and ckpt.latest() is not None:
    start_chunk, state = ckpt.restore(state)
    state = layout.put(state, layout.state)
    metrics_log.truncate(lambda row: row["chunk"] < start_chunk)
    log(f"resumed {run_dir} at chunk {start_chunk}/{n_chunks}")
  progress = report.Progress(n_chunks * k * system.iteration_env_steps, PROGRESS_KEYS)
  log(f"{cfg.name}: {n_runs} run(s) ({n_teachers} teacher(s) x {n_seeds} seed(s)"
      f"{layout.describe()}) x "
      f"{system.num_iterations} iterations x {system.iteration_env_steps} env steps; "
      "compiling...")
  eval_every_chunks = max(1, round(cfg.run.eval_every / (k * system.iteration_env_steps)))
  ckpt_every_chunks = max(1, round(cfg.run.checkpoint_every / (k * system.iteration_env_steps)))
  evaluator = BackgroundEval(system, layout, evaluate, eval_keys)

  def write(rows):
    for r in rows:
      metrics_log.write(r)
      progress(r["env_steps"], r)

  for c in range(start_chunk, n_chunks):
    t0 = time.perf_counter()
    state, metrics = chunk(state, teacher_per_run)
    metrics = jax.device_get(metrics)
    dt = time.perf_counter() - t0
    steps = int(np.asarray(state.ppo.env_steps)[0])
    stamp = {"chunk": c, "iteration": (c + 1) * k, "env_steps": steps,
             "wall_s": time.perf_counter() - t_start, "time": time.time()}
    row = {**stamp, "steps_per_s": n_runs * k * system.iteration_env_steps / dt}
    row.update({key: _chunk_mean(key, val) for key, val in metrics.items()})
    write([row] + evaluator.ready())
    if ((c + 1) % eval_every_chunks == 0) and c != n_chunks - 1:
      write(evaluator.submit(state, stamp))
    stopping = stop_after_chunks is not None and c + 1 - start_chunk >= stop_after_chunks
    if (c + 1) % ckpt_every_chunks == 0 or c == n_chunks - 1 or stopping:
      ckpt.save(c + 1, state)
    if stopping:
      return None
  write(evaluator.wait())
  return finish(cfg, system, state, evaluate, eval_keys, metrics_log, run_dir,
                teacher_configs, time.perf_counter() - t_start)


def train_external(cfg: ExperimentConfig, run_dir: str, gatherer: Gatherer,
                   resume: bool = False, log=print) -> dict:
  """External driver: jitted ``collect`` -> ``gatherer.label`` on the host -> jitted ``learn``,
  one seed, a checkpoint after every iteration. A restarted run recomputes the same query for
  the interrupted iteration (same key), so a gatherer that stores answers by iteration never
  pays twice."""
  system = RLHP(cfg)
  collect, learn = jax.jit(system.collect), jax.jit(system.learn)
  evaluate = jax.jit(jax.vmap(system.evaluate))
  eval_keys = jax.random.split(jax.random.PRNGKey(10_000 + cfg.run.seed), 1)
  state = jax.jit(system.init)(jax.random.PRNGKey(cfg.run.seed))
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"))
  metrics_log = report.MetricsLog(run_dir)
  start = 0
  if resume and ckpt.latest() is not None:
    start, state = ckpt.restore(state)
    metrics_log.truncate(lambda row: row["iteration"] <= start)
    log(f"resumed {run_dir} at iteration {start}/{system.num_iterations}")
  progress = report.Progress(system.num_iterations * system.iteration_env_steps, PROGRESS_KEYS)
  t_start = time.perf_counter()
  eval_every = max(1, round(cfg.run.eval_every / system.iteration_env_steps))
  try:
    for it in range(start, system.num_iterations):
      t0 = time.perf_counter()
      state, query, metrics = collect(state)
      host_query = jax.device_get(query)
      mask = np.asarray(host_query.mask)
      if mask.any():
        label, valid = gatherer.label(_query_dict(host_query), it)
      else:
        label, valid = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, bool)
      state, learn_metrics = learn(state, query, jnp.asarray(label, jnp.float32),
                                   jnp.asarray(valid, bool))
      metrics = jax.device_get({**metrics, **learn_metrics})
      dt = time.perf_counter() - t0
      row = {"iteration": it + 1, "env_steps": int(state.ppo.env_steps),
             "steps_per_s": system.iteration_env_steps / dt}
      row.update({k: _chunk_mean(k, np.asarray(val)[None, None]) for k, val in metrics.items()})
      if (it + 1) % eval_every == 0 and it != system.num_iterations - 1:
        batched = jax.tree.map(lambda x: x[None], state)
        row.update(eval_row(jax.device_get(evaluate(batched, eval_keys))))
      row["wall_s"], row["time"] = time.perf_counter() - t_start, time.time()
      metrics_log.write(row)
      ckpt.save(it + 1, state)
      progress(row["env_steps"], row)
    batched = jax.tree.map(lambda x: x[None], state)
    return finish(cfg, system, batched, evaluate, eval_keys, metrics_log, run_dir, [cfg.teacher],
                  time.perf_counter() - t_start)
  finally:
    close = getattr(gatherer, "close", None)
    if close is not None:
      close()


def _query_dict(query: Query) -> dict:
  """Host arrays of a query, as gatherers receive it."""
  return {"pairs": {f: np.asarray(getattr(query.pairs, f))
                    for f in ("obs", "action", "true_reward", "qpos", "qvel")},
          "mask": np.asarray(query.mask), "disagreement": np.asarray(query.disagreement),
          "teacher_key": np.asarray(query.teacher_key)}


def finish(cfg, system, state, evaluate, eval_keys, metrics_log, run_dir, teacher_configs,
           wall) -> dict:
  """Final evaluation of every run (also the last row of the metrics), summary, learning-curve
  PNG and policy video."""
  done_at = time.time()   # when the final policy existed; evaluation is not training time
  ev = jax.device_get(evaluate(state, eval_keys))
  last_row = metrics_log.rows[-1] if metrics_log.rows else {}
  metrics_log.write({**{k: last_row[k] for k in ("chunk", "iteration") if k in last_row},
                     "env_steps": int(np.asarray(state.ppo.env_steps).ravel()[0]),
                     "wall_s": wall, "time": done_at, "final": True, **eval_row(ev)})
  qpos, alive = ev.qpos, ev.alive
  per_episode = lambda f, *xs: np.asarray(jax.vmap(jax.vmap(f, in_axes=1))(*xs))
  flips = per_episode(tasks.flips_completed, qpos[..., 2])
  landed = per_episode(tasks.flips_landed, qpos[..., 2], qpos[..., 1])
  returns = np.asarray(ev.task_return)
  summary = {
      "name": cfg.name, "reward_source": cfg.reward_source, "task": cfg.env.task,
      "env_mode": cfg.env.mode,
      "env_steps": int(np.asarray(state.ppo.env_steps)[0]), "runs": len(returns),
      "wall_s": wall, "teachers": [_teacher_name(t) for t in teacher_configs],
      "num_seeds": cfg.run.num_seeds,
      "eval_episodes": cfg.run.eval_episodes, "eval_episode_length": cfg.run.eval_episode_length,
      "eval_return_per_run": returns.mean(-1).tolist(),
      "eval_return_mean": float(returns.mean()),
      "eval_seals_return_per_run": np.asarray(ev.seals_return).mean(-1).tolist(),
      "eval_gym_return_per_run": np.asarray(ev.gym_return).mean(-1).tolist(),
      "eval_gym_return_min_per_run": np.asarray(ev.gym_return).min(-1).tolist(),
      "eval_healthy_fraction_per_run": np.asarray(ev.healthy_fraction).mean(-1).tolist(),
      "eval_healthy_fraction_min_per_run": np.asarray(ev.healthy_fraction).min(-1).tolist(),
      "eval_forward_speed_per_run": np.asarray(ev.forward_speed).mean(-1).tolist(),
      "flips_per_episode_per_run": flips.mean(-1).tolist(),
      "landed_flips_per_episode_per_run": landed.mean(-1).tolist(),
      "labels_per_run": (np.asarray(state.buffer.count).tolist()
                         if system.preference_learning else [0] * len(returns)),
  }
  for key in ("reward/true_corr", "reward/val_accuracy", "reward/val_oracle_agreement"):
    if key in last_row:
      summary[key.replace("/", "_") + "_per_run"] = last_row[key]
  report.plot_learning_curve(metrics_log.rows, os.path.join(run_dir, "learning_curve.png"),
                             title=f"{cfg.name}: returns of the deterministic policy",
                             series=CURVE_SERIES,
                             second_x="prefs/labels" if system.preference_learning else None,
                             fraction_key="eval/healthy_fraction")
  first = np.asarray(qpos[0, :, 0])[np.asarray(alive[0, :, 0]).astype(bool)]
  np.save(os.path.join(run_dir, "eval_qpos.npy"), first)  # re-render with `rlhp-jax render`
  if cfg.run.video:
    summary["video"] = write_policy_video(cfg, run_dir, first)
  return summary


CURVE_SERIES = {"eval/return": "task return", "eval/seals_return": "seals-style return",
                "eval/gym_return": "Gym-rules return",
                "train/episode_return": "train episodes (task)"}


def _teacher_name(t: teachers.TeacherConfig) -> str:
  for name, preset in teachers.PRESETS.items():
    if preset == t:
      return name
  return str(t)


COUNTERS = ("prefs/labels", "prefs/requested")
"""Metrics that count up over a run: a chunk reports their last value, not a mean."""


def _chunk_mean(key, values):
  """Mean over a chunk's iterations per run ([runs, k, ...] -> [runs, ...]), ignoring NaN
  (an iteration in which no episode ended has no train return); counters keep their last
  value."""
  values = np.asarray(values, float)
  if key in COUNTERS:
    return values[:, -1].tolist()
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", category=RuntimeWarning)
    out = np.nanmean(values, axis=1)
  return np.where(np.isnan(out), None, out).tolist()


POLICY_VIDEO_FPS = 60.0
"""Policy videos draw every k-th env step so they play in real time at about this rate."""


def write_policy_video(cfg: ExperimentConfig, run_dir: str, qpos) -> str | None:
  """Renders one evaluation episode (qpos [L, 6]) to ``policy.mp4`` (real time) and a contact
  sheet of its frames to ``policy_frames.png``; a missing GL backend is reported and skipped,
  never fatal to a finished run. The episode is drawn in contiguous segments, one per core."""
  from rlhp_jax import render
  path = os.path.join(run_dir, "policy.mp4")
  stride = max(1, round(1.0 / (cfg.env.dt * POLICY_VIDEO_FPS)))
  drawn = np.asarray(qpos)[::stride]
  segments = np.array_split(drawn, max(1, min(os.cpu_count() or 1, len(drawn))))
  try:
    frames = np.concatenate(render.render_clips(
        hopper.ASSET, segments, cfg.run.video_width, cfg.run.video_height,
        camera=render.FOLLOW, shadows=True))
  except render.RenderError as e:
    print(f"video skipped: {e}")
    return None
  fps = 1.0 / (cfg.env.dt * stride)
  render.write_video(path, frames, fps=fps)
  render.write_contact_sheet(os.path.join(run_dir, "policy_frames.png"), frames, fps)
  return path
