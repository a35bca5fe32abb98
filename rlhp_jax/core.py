"""The RLHP core: run state, one pure iteration, and the keys of a run. Device side, pure.

One iteration (``RLHP.iteration``):

    collect   ``prefs.rollouts_per_iteration`` x (rollout with the policy -> relabel with the
              reward ensemble -> PPO update; frozen while the initial share of labels is
              collected) -> candidate pairs cut within episodes of those rollouts (with
              ``prefs.archive_size``, a share paired with fragments of earlier iterations;
              with ``prefs.branch_share``, a share paired with branches of the policy run
              from their first state with its control offset)
              -> keep the most-disagreed (or random) pairs                        -> Query
    label     synthetic teacher on the pairs' oracle rewards (or, in the external driver, a
              gatherer on the host)
    learn     append labelled pairs to the fixed-capacity buffer -> reward-ensemble SGD + L2 rule

With ``reward_source="true"`` the iteration is plain PPO on the oracle's reward (the baseline);
``"true_normalized"`` passes the oracle's reward through the learned reward's normalisation.

Every step returns ``Metrics``: what a chunk of iterations averages and what it reports as the
last value are two fields, not a rule on metric names.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
from flax import struct

from rlhp_jax import branches, fragments, ppo, preferences, reward_model, teachers
from rlhp_jax.envs import hopper
from rlhp_jax.experiment import ExperimentConfig


@struct.dataclass
class Metrics:
  """An iteration's metrics, by how a chunk of iterations reduces them (leaves [] per
  iteration; [runs, k] once a driver has stacked them).

  * ``mean``: averaged over the chunk; NaN marks an iteration with nothing to report (no
    episode ended) and is skipped.
  * ``last``: counters of the whole run (labels, pairs requested); the chunk's last value.
  """

  mean: dict
  last: dict

  def merge(self, other: "Metrics") -> "Metrics":
    return Metrics(mean={**self.mean, **other.mean}, last={**self.last, **other.last})


@struct.dataclass
class RLHPState:
  """One run's whole state (the drivers stack runs on a leading axis): the agent with its env
  batch (``ppo.env_state`` leaves [B, ...]), the reward ensemble, the preference buffer and the
  counters; a checkpoint holds exactly this."""

  ppo: ppo.PPOState
  reward: reward_model.RewardState
  reward_norm: reward_model.RewardNorm   # running statistics of the reward PPO is given
  buffer: preferences.PreferenceBuffer
  requested: jax.Array      # [] int32, pairs queried so far (the label budget spent)
  rl_env_steps: jax.Array   # [] int32, env steps since RL started (after the initial labels)
  iteration: jax.Array      # [] int32
  key: jax.Array
  archive: fragments.Archive | None = None   # earlier iterations' fragments (prefs.archive_size)
  fresh_agent: ppo.AgentParams | None = None  # the nets ``ppo.reset_at`` restarts from


@struct.dataclass
class Segment:
  """What a query needs of the iteration's rollouts: leaves [K * T, B], the K rollouts of each
  env laid end to end in time (they are consecutive in the env's life)."""

  obs: jax.Array            # what the reward nets score (``RLHP.scored_obs``)
  action: jax.Array         # raw policy samples (fragments clip them)
  true_reward: jax.Array
  qpos: jax.Array
  qvel: jax.Array
  done: jax.Array
  episode_step: jax.Array   # steps into the episode before each step (the env's clock)


@struct.dataclass
class Query:
  """Pairs chosen by ``collect``: ``mask`` marks those asked for in this iteration. Leaves are
  device arrays in the core and numpy arrays once a driver hands a query to a gatherer."""

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
    self.whole_batch = None   # what ``ppo.train_step`` applies to each rollout (``laid_out``)
    self.env = hopper.make(cfg.env)
    self.num_iterations = cfg.num_iterations
    self.preference_learning = cfg.reward_source == "preferences"
    self.agent = ppo.Agent(cfg.ppo, hopper.OBS_SIZE, hopper.ACTION_SIZE,
                           total_updates=self.optimizer_steps)
    self.ensemble = reward_model.RewardEnsemble(cfg.reward, hopper.OBS_SIZE, hopper.ACTION_SIZE)
    self.scores_after = cfg.reward.observation == "after"   # reward.observation: s_{t+1}

  def laid_out(self, whole_batch) -> "RLHP":
    """The same system whose rollouts go through ``whole_batch`` (a shallow copy): a layout's
    ``whole`` where it gathers each rollout onto every device (``loop.compile_runs``)."""
    system = copy.copy(self)
    system.whole_batch = whole_batch
    return system

  # -- state ------------------------------------------------------------------------------
  def init(self, key: jax.Array) -> RLHPState:
    k_ppo, k_reward, key = jax.random.split(key, 3)
    p = self.cfg.prefs
    # drawn here, not in the loop: drawing nets inside the partitioned loop hung XLA:CPU
    fresh_agent = (self.agent.init(jax.random.fold_in(key, 0x7e5e7))
                   if self.cfg.ppo.reset_at > 0 else None)
    return RLHPState(
        fresh_agent=fresh_agent,
        ppo=ppo.init_state(self.agent, self.env, k_ppo),
        reward=self.ensemble.init(k_reward),
        reward_norm=reward_model.init_norm(
            self.cfg.reward.ensemble_size if self.preference_learning else 1),
        buffer=preferences.init_buffer(p.total_labels if self.preference_learning else 1,
                                       p.fragment_length, hopper.OBS_SIZE, hopper.ACTION_SIZE,
                                       self.cfg.reward.ensemble_size),
        requested=jnp.zeros((), jnp.int32), rl_env_steps=jnp.zeros((), jnp.int32),
        iteration=jnp.zeros((), jnp.int32), key=key,
        archive=(fragments.init_archive(p.archive_size, p.fragment_length, hopper.OBS_SIZE,
                                        hopper.ACTION_SIZE, self.env.mj_model.nq,
                                        self.env.mj_model.nv)
                 if self.preference_learning and p.archive_size > 0 else None))

  def init_runs(self, keys: jax.Array) -> RLHPState:
    """States of several runs stacked on a leading axis (seeds x teacher settings).

    Runs are initialised one after another (``lax.map``), not vmapped: a vmapped init makes
    the orthogonal initialisers one batched LAPACK QR, which XLA:CPU runs with a nested
    parallel loop that deadlocks its thread pool on small (2-core) machines. Init runs once,
    so nothing is lost."""
    return jax.lax.map(self.init, keys)

  # -- the iteration ------------------------------------------------------------------------
  def scored_obs(self, transitions) -> jax.Array:
    """The observation of each step that the reward nets score (``reward.observation``): the
    one acted on, or the one the step ended in (before any reset)."""
    return transitions.next_obs if self.scores_after else transitions.obs

  def raw_learned_reward(self, reward_state, obs, action) -> jax.Array:
    """Each member's reward of the scored observations ``obs`` [T, B, D] and the applied
    (clipped) actions: [K, T, B]."""
    return self.ensemble.member_rewards(reward_state.params,
                                        self.ensemble.inputs(reward_state.obs_stats, obs),
                                        hopper.applied_action(action))

  def learned_reward(self, params_norm_beta, transitions):
    """The reward PPO optimises: each member's reward normalised by its running statistics
    (updated with this batch first), averaged over members, plus beta times the members'
    spread (the optimistic bonus; beta 0 without one). Returns (rewards [T, B],
    (reward_state, norm, beta))."""
    reward_state, norm, beta = params_norm_beta
    raw = self.raw_learned_reward(reward_state, self.scored_obs(transitions),
                                  transitions.action)
    norm = reward_model.update_norm(norm, raw, self.cfg.reward.normalization_rate)
    members = reward_model.normalize_members(norm, raw)
    return members.mean(0) + beta * members.std(0), (reward_state, norm, beta)

  def normalized_true_reward(self, norm, transitions):
    """The oracle's reward through exactly the learned reward's normalisation (one member):
    the baseline that isolates what normalising costs."""
    raw = transitions.true_reward[None]
    norm = reward_model.update_norm(norm, raw, self.cfg.reward.normalization_rate)
    return reward_model.apply_norm(norm, raw), norm

  def maybe_reset(self, state: RLHPState) -> ppo.PPOState:
    """The agent this iteration trains: with ``ppo.reset_at``, its nets drawn afresh in the one
    iteration whose RL steps first reach that share of the budget; otherwise as it is."""
    at = self.cfg.ppo.reset_at
    if at == 0:
      return state.ppo
    step = max(1, int(round(at * self.rl_env_step_budget)))
    crossing = (state.rl_env_steps >= step) & (
        state.rl_env_steps - self.iteration_env_steps < step)
    return tree_select(crossing, ppo.reset_nets(self.agent, state.ppo, state.fresh_agent),
                       state.ppo)

  def ppo_phase(self, ppo_state: ppo.PPOState, reward_fn, reward_params):
    """``prefs.rollouts_per_iteration`` PPO iterations (scan). Returns (ppo_state, Segment
    [K * T, B], metrics averaged over the K updates; the train return over episodes that
    ended, NaN when none did; reward_params after the K batches)."""
    def one(carry, _):
      s, rp = carry
      s, tr, m, rp = ppo.train_step(self.agent, self.env, s, reward_fn, rp, self.whole_batch)
      seg = Segment(obs=self.scored_obs(tr), action=tr.action, true_reward=tr.true_reward,
                    qpos=tr.qpos, qvel=tr.qvel, done=tr.done, episode_step=tr.episode_step)
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

  def collect(self, state: RLHPState) -> tuple[RLHPState, Query, Metrics]:
    """Rollouts, PPO on the learned reward, and the pairs to query ([P] pairs of
    ``prefs.pairs_per_iteration``, each [2, L, ...])."""
    p = self.cfg.prefs
    key, k_select, k_teach, k_learn = jax.random.split(state.key, 4)
    # Labels are due by the RL steps taken once this iteration's rollouts have run.
    n_request, warmup = preferences.pairs_to_request(
        p, state.requested, state.rl_env_steps + self.iteration_env_steps,
        self.rl_env_step_budget)
    beta = reward_model.exploration_beta(self.cfg.reward, state.rl_env_steps)
    new_ppo, seg, metrics, (_, norm, _) = self.ppo_phase(
        self.maybe_reset(state), self.learned_reward, (state.reward, state.reward_norm, beta))
    # While the initial labels are collected the policy stays the initial random one.
    frozen = state.ppo.replace(env_state=new_ppo.env_state, key=new_ppo.key,
                               env_steps=new_ppo.env_steps)
    new_ppo = tree_select(warmup, frozen, new_ppo)
    learned = self.raw_learned_reward(state.reward, seg.obs, seg.action).mean(0)
    metrics["reward/true_corr"] = reward_model.pearson(learned, seg.true_reward)
    reward_state = self.ensemble.observe(state.reward, seg.obs)
    member_returns = lambda obs, action, counted: self.ensemble.fragment_returns(
        reward_state.params, self.ensemble.inputs(reward_state.obs_stats, obs), action, counted)
    pairs, score, known_ties, partners = fragments.select(
        k_select, seg, p.pairs_per_iteration, p.fragment_length, p.selection, p.oversample,
        member_returns, p.even_margin, p.same_step_pairs, p.random_share, state.archive,
        p.archive_share, self.branch_fn(new_ppo.params), p.min_length)
    archive = state.archive
    if archive is not None:
      archive = fragments.archive_add(archive, jax.random.fold_in(k_select, 2), seg,
                                      p.fragment_length, p.pairs_per_iteration)
      metrics["prefs/archived_pairs"] = partners["archived"]
    if p.branch_share > 0:
      metrics["prefs/branched_pairs"] = partners["branched"]
    query = Query(pairs=pairs, mask=jnp.arange(p.pairs_per_iteration) < n_request,
                  disagreement=score, teacher_key=k_teach, learn_key=k_learn)
    metrics["prefs/warmup"] = warmup
    metrics["reward/exploration_beta"] = beta
    metrics["prefs/disagreement"] = jnp.mean(score)
    metrics["prefs/disagreement_spread"] = jnp.max(score) - jnp.min(score)
    metrics["prefs/known_ties"] = known_ties
    state = state.replace(
        ppo=new_ppo, reward=reward_state, key=key, iteration=state.iteration + 1,
        reward_norm=norm, archive=archive,
        rl_env_steps=state.rl_env_steps + jnp.where(warmup, 0, self.iteration_env_steps))
    return state, query, Metrics(mean=metrics, last={})

  def branch_fn(self, params: ppo.AgentParams):
    """What ``fragments.select`` calls to pair candidates with branches of the policy with
    ``params`` (``prefs.branch_share``); None when off."""
    p = self.cfg.prefs
    if p.branch_share == 0:
      return None
    rollout_fn = functools.partial(branches.rollout, self.agent, self.env, params,
                                   length=p.fragment_length, noise=p.branch_noise,
                                   scored_after=self.scores_after)
    return functools.partial(branches.with_branched_partners, share=p.branch_share,
                             rollout_fn=rollout_fn)

  def learn(self, state: RLHPState, query: Query, label: jax.Array,
            valid: jax.Array) -> tuple[RLHPState, Metrics]:
    """Stores the answered pairs (label [P] in [0, 1], valid [P] bool; only masked pairs count)
    and trains the reward ensemble."""
    rc = self.cfg.reward
    k_add, k_train = jax.random.split(query.learn_key)
    answered = valid & query.mask
    buffer = preferences.add(state.buffer, query.pairs.obs, query.pairs.action, label, answered,
                             query.pairs.counted_reward.sum(-1), k_add, rc.validation_fraction,
                             rc.bootstrap, query.pairs.counted)
    reward_state, metrics = reward_model.train(self.ensemble, state.reward, buffer, k_train)
    metrics = {k: val for k, val in metrics.items() if not k.endswith("_member")}
    metrics["prefs/skipped"] = jnp.sum(query.mask & ~valid)
    requested = state.requested + jnp.sum(query.mask)
    counters = {"prefs/labels": buffer.count, "prefs/requested": requested,
                "prefs/equal_labels": preferences.equal_labels(buffer)}
    return state.replace(buffer=buffer, reward=reward_state, requested=requested), Metrics(
        mean=metrics, last=counters)

  def iteration(self, state: RLHPState, teacher: teachers.TeacherParams):
    """One full synthetic iteration: collect -> teacher -> learn. Pure."""
    if not self.preference_learning:
      return self.true_reward_iteration(state)
    state, query, metrics = self.collect(state)
    label, valid = teachers.teach(teacher, query.pairs.true_reward, query.teacher_key,
                                  query.mask, query.pairs.counted)
    state, learn_metrics = self.learn(state, query, label, valid)
    return state, metrics.merge(learn_metrics)

  def true_reward_iteration(self, state: RLHPState):
    reward_fn = (self.normalized_true_reward if self.cfg.reward_source == "true_normalized"
                 else ppo.true_reward_fn)
    new_ppo, _, metrics, norm = self.ppo_phase(self.maybe_reset(state), reward_fn,
                                               state.reward_norm)
    return state.replace(ppo=new_ppo, iteration=state.iteration + 1, reward_norm=norm,
                         rl_env_steps=new_ppo.env_steps), Metrics(mean=metrics, last={})

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
    return self.cfg.warmup_iterations

  @property
  def optimizer_steps(self) -> int:
    """PPO optimiser steps over the run, the learning-rate schedule's length: every RL
    iteration (not the frozen initial ones) runs ``rollouts_per_iteration`` PPO updates of
    ``num_epochs x num_minibatches`` steps each."""
    p = self.cfg.ppo
    return ((self.num_iterations - self.warmup_iterations) * self.rollouts_per_iteration
            * p.num_epochs * p.num_minibatches)

  @property
  def rl_env_step_budget(self) -> int:
    """Env steps of RL after the initial labels: the label schedule's time axis."""
    return (self.num_iterations - self.warmup_iterations) * self.iteration_env_steps

  def chunk(self, state: RLHPState, teacher: teachers.TeacherParams):
    """``run.iterations_per_call`` iterations (lax.scan); metrics' leaves stacked [k]."""
    return jax.lax.scan(lambda s, _: self.iteration(s, teacher), state,
                        length=self.cfg.run.iterations_per_call)

  def evaluate(self, state: RLHPState, key: jax.Array) -> ppo.Evaluation:
    """``run.eval_episodes`` deterministic episodes of the policy; leaves [E, ...]."""
    return self.evaluate_policy(state.ppo.params, key)

  def evaluate_policy(self, params: ppo.AgentParams, key: jax.Array) -> ppo.Evaluation:
    return ppo.evaluate(self.agent, self.env, params, key,
                        num_episodes=self.cfg.run.eval_episodes,
                        length=self.cfg.run.eval_episode_length,
                        action_rule=self.cfg.run.eval_action)


def env_batched(state: RLHPState):
  """A pytree of bools shaped like ``state``: True for the leaves whose first axis (after a
  runs axis) is the env batch, which a layout may split over devices."""
  mask = jax.tree.map(lambda _: False, state)
  return mask.replace(ppo=mask.ppo.replace(
      env_state=jax.tree.map(lambda _: True, state.ppo.env_state)))


def run_keys(cfg: ExperimentConfig, num_teachers: int) -> jax.Array:
  """One PRNG key per run, [runs, 2]; runs are teacher-major: run r = (teacher r // S,
  seed r % S). The external driver's one run is run 0."""
  seeds = jnp.arange(cfg.run.seed, cfg.run.seed + cfg.run.num_seeds)
  return jax.vmap(jax.random.PRNGKey)(jnp.tile(seeds, num_teachers))


def eval_keys(cfg: ExperimentConfig, num_runs: int) -> jax.Array:
  """The evaluation keys of a run's runs, [runs, 2]: the same for every evaluation, so curves
  compare policies, not episodes."""
  return jax.random.split(jax.random.PRNGKey(10_000 + cfg.run.seed), num_runs)
