"""Pure-functional PPO (Schulman et al. 2017) for a vmapped MJX env.

One iteration, read top to bottom:

    rollout        lax.scan over ``unroll_length`` steps of the vmapped env and the policy
                   -> Transition[T, B] (obs, action, qpos/qvel, true reward, ...)
    rewards        chosen by the caller: the true reward, or a learned one
    update         GAE, then ``num_epochs`` x ``num_minibatches`` clipped-objective SGD steps

The reward PPO optimises is an argument of ``update``; nothing here reads ``true_reward``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.scipy.stats
import jax.numpy as jnp
import optax
from flax import struct

from rlhp_jax import networks, running_stats
from rlhp_jax import config_errors as v
from rlhp_jax.envs import tasks
from rlhp_jax.envs.hopper import EnvState, Hopper, applied_action, is_healthy


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """PPO hyperparameters."""

  num_envs: int = 256
  """Envs stepped in parallel (vmap)."""
  unroll_length: int = 64
  """Env steps per env per iteration; an iteration collects num_envs * unroll_length steps."""
  num_epochs: int = 5
  """Passes over each iteration's batch."""
  num_minibatches: int = 16
  """Minibatches per epoch; must divide num_envs * unroll_length."""
  learning_rate: float = 3e-4
  """Adam's step size at the start of the run. Measured halved and doubled on the main job's
  preference arm (session 36, seeds 24-31, benchmarks/RESULTS.md): 1 and 3 of 8 seeds meet
  issue 10's bar against 3e-4's 4 of 8 on the same seeds (Gym-rules IQM 1623 [283, 2671] and
  1815 [301, 3623] against 2208 [616, 3460]); no difference is claimed."""
  anneal_lr: bool = True
  """Decay the learning rate linearly to 0 over the run."""
  discount: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  value_cost: float = 0.5
  entropy_cost: float = 0.0
  anneal_entropy: bool = False
  """Decay the entropy bonus linearly to 0 over the run, on the learning rate's clock: the
  policy's noise may grow early and shrinks by the end, where the deterministic policy is
  evaluated."""
  max_grad_norm: float = 0.5
  reset_at: float = 0.0
  """Share of the run's RL env steps at which the policy and value nets are drawn afresh, once
  (0: never). The observation statistics, the learning-rate and entropy clocks and everything
  outside the agent (the reward ensemble, its labels) are kept; Adam's moments restart. Against
  the primacy bias (Nikishin et al. 2022): a policy shaped by an early, poorly informed reward
  starts over on the better one the labels have made since. Applies to every reward source,
  so the arms keep one PPO. Measured at 1/3 on the main job's preference arm (session 35,
  seeds 24-39, benchmarks/RESULTS.md): 4 of 16 seeds meet issue 10's bar against the main
  job's 6 of 16 on the same seeds (Gym-rules IQM 1428 [629, 2541] against 1612 [437, 2963]);
  more seeds hop (13 of 16 at >= 2 m/s against 11), but with brief exits from Gym's range.
  Not adopted."""
  reward_scale: float = 1.0
  """Rewards are multiplied by this before GAE."""
  normalize_advantages: bool = True
  normalize_observations: bool = True
  """Running mean/std normalisation of observations, updated from each rollout."""
  policy_hidden: Sequence[int] = (64, 64)
  value_hidden: Sequence[int] = (64, 64)
  init_log_std: float = -0.5
  min_log_std: float | None = None
  """A floor under the policy's log std (None: none): the std used to sample, to score actions
  and in the entropy is max(exp(parameter), exp(min_log_std)), so PPO cannot shrink the training
  policy's noise below it (the parameter gets no gradient while it is below the floor). The
  deterministic policy that is evaluated is unchanged. Against a policy that settles early: the
  main job's seed 0 on an AVX-512 host (session 40) stands still from 1.1 M env steps on while
  its entropy keeps falling, from 2.76 nats at the start to -0.76 (std 0.19 per dimension).
  Measured at -1.0 (std 0.37; session 40, benchmarks/RESULTS.md): that seed's training policy
  shuffles forward under the floor's noise, but its deterministic policy falls (seals-style
  423, Gym-rules 362, healthy 0.22, against 1067 / 1067 / 1.00 standing); on the vmapped seeds
  0-7 the floor never binds (entropy stays above 1.7 nats). Not adopted."""
  bounded_mean: bool = False
  """The policy's mean is tanh of the network's output, inside the action box [-1, 1]. Off, the
  mean is unbounded and the deterministic policy evaluated is clip(mean): where the mean has
  drifted past the box (the stochastic policy still reaching inside it through its noise), that
  is a bang-bang controller the training policy never was."""
  bounds_cost: float = 0.0
  """Weight of a penalty on the policy mean's excursion past the action box [-1, 1]:
  ``bounds_cost * mean(sum_dims max(|mean| - 1, 0)^2)`` is added to the loss (the "bounds loss"
  of rl_games' continuous PPO, whose soft bound is 1.1; here the box's edge). The env clips the
  Gaussian sample, so past the box the policy gradient no longer sees the mean and it drifts
  (the main job's final policy: 59% of mean actions outside the box, up to 4.5); the
  deterministic policy clip(mean) is then the box's corner although the trained policy's noise
  still reached inside. Unlike ``bounded_mean`` the parametrisation and its gradients inside the
  box are unchanged. 0 turns it off. Measured at 0.1 on the main job's two arms (session 23,
  8 seeds, benchmarks/RESULTS.md): PPO on the task's reward stays in Gym's range through every
  evaluation episode on all 8 seeds (Gym-rules IQM 3502 [3383, 3567]); PPO on the learned
  reward does not gain (1196 [233, 3399], three seeds upright against five); at 0.01 neither
  arm moves (1093 [202, 3381]; 3342 [2339, 3532]). Not adopted, since both arms share the
  PPO."""

  def __post_init__(self):
    for name in ("num_envs", "unroll_length", "num_epochs", "num_minibatches"):
      v.positive_int(getattr(self, name), f"ppo.{name}")
    v.require(self.batch_size % self.num_minibatches == 0, "ppo.num_minibatches",
              f"must divide num_envs * unroll_length = {self.batch_size}; "
              f"got {self.num_minibatches}")
    v.positive(self.learning_rate, "ppo.learning_rate")
    v.probability(self.discount, "ppo.discount")
    v.probability(self.gae_lambda, "ppo.gae_lambda")
    v.positive(self.clip_eps, "ppo.clip_eps")
    v.non_negative(self.value_cost, "ppo.value_cost")
    v.non_negative(self.entropy_cost, "ppo.entropy_cost")
    v.non_negative(self.bounds_cost, "ppo.bounds_cost")
    v.positive(self.max_grad_norm, "ppo.max_grad_norm")
    v.require(0 <= self.reset_at < 1, "ppo.reset_at",
              f"must be in [0, 1) (0: never), got {self.reset_at!r}")
    v.positive(self.reward_scale, "ppo.reward_scale")
    v.require(self.min_log_std is None or (isinstance(self.min_log_std, (int, float))
                                           and not isinstance(self.min_log_std, bool)
                                           and math.isfinite(self.min_log_std)),
              "ppo.min_log_std", f"must be a finite number or null (no floor), "
              f"got {self.min_log_std!r}")
    for name in ("policy_hidden", "value_hidden"):
      sizes = getattr(self, name)
      v.require(len(sizes) > 0 and all(isinstance(s, int) and s > 0 for s in sizes),
                f"ppo.{name}", f"must be a non-empty list of positive layer widths, got {sizes!r}")
    object.__setattr__(self, "policy_hidden", tuple(self.policy_hidden))
    object.__setattr__(self, "value_hidden", tuple(self.value_hidden))

  @property
  def batch_size(self) -> int:
    return self.num_envs * self.unroll_length

  @property
  def minibatch_size(self) -> int:
    return self.batch_size // self.num_minibatches


@struct.dataclass
class Transition:
  """One env step for every env; leaves are [T, B, ...] after a rollout."""

  obs: jax.Array          # [11] observation the action was taken in
  action: jax.Array       # [3] raw Gaussian sample (the env clips it to [-1, 1])
  log_prob: jax.Array     # [] log pi(action | obs) under the behaviour policy
  value: jax.Array        # [] V(obs)
  next_obs: jax.Array     # [11] observation after the step, before any reset
  next_value: jax.Array   # [] V(next_obs), for bootstrapping through time limits
  terminated: jax.Array   # [] bool, episode ended by failure (no bootstrap)
  done: jax.Array         # [] bool, episode ended (terminated or truncated)
  qpos: jax.Array         # [6] physical state before the step, for clips and oracles
  qvel: jax.Array         # [6]
  true_reward: jax.Array  # [] task oracle score; PPO never reads it
  episode_return: jax.Array  # [] true return of the episode that ended here (0 if not done)
  episode_step: jax.Array    # [] int32, steps into its episode before this one (the env's clock)


@struct.dataclass
class AgentParams:
  policy: dict
  value: dict
  obs_stats: running_stats.RunningStats


@struct.dataclass
class PPOState:
  params: AgentParams
  opt_state: optax.OptState
  env_state: EnvState      # batched over num_envs
  key: jax.Array
  env_steps: jax.Array     # [] int32, env steps collected so far


class Agent:
  """Static pieces of the agent: network definitions and the optimiser."""

  def __init__(self, cfg: PPOConfig, obs_size: int, action_size: int, total_updates: int = 1):
    self.cfg = cfg
    self.obs_size = obs_size
    self.total_updates = max(total_updates, 1)
    self.policy_net = networks.Policy(cfg.policy_hidden, action_size, cfg.init_log_std,
                                     cfg.bounded_mean, cfg.min_log_std)
    self.value_net = networks.Value(cfg.value_hidden)
    lr = (optax.linear_schedule(cfg.learning_rate, 0.0, self.total_updates)
          if cfg.anneal_lr else cfg.learning_rate)
    self.optimizer = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                                 optax.adam(lr, eps=1e-5))

  def init(self, key: jax.Array) -> AgentParams:
    kp, kv = jax.random.split(key)
    dummy = jnp.zeros((1, self.obs_size))
    stats = running_stats.init(self.obs_size)
    return AgentParams(policy=self.policy_net.init(kp, dummy),
                       value=self.value_net.init(kv, dummy), obs_stats=stats)

  def normalize(self, params: AgentParams, obs: jax.Array) -> jax.Array:
    if not self.cfg.normalize_observations:
      return obs
    return running_stats.normalize(params.obs_stats, obs)

  def distribution(self, params: AgentParams, obs: jax.Array):
    return self.policy_net.apply(params.policy, self.normalize(params, obs))

  def value(self, params: AgentParams, obs: jax.Array) -> jax.Array:
    return self.value_net.apply(params.value, self.normalize(params, obs))

  def act(self, params: AgentParams, obs: jax.Array, key: jax.Array):
    """Samples an action: returns (action, log_prob)."""
    mean, log_std = self.distribution(params, obs)
    action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return action, networks.gaussian_log_prob(action, mean, log_std)

  def deterministic_action(self, params: AgentParams, obs: jax.Array,
                           rule: str = "clip_mean") -> jax.Array:
    """The policy's action without noise, by ``rule`` (see ``EVAL_ACTIONS``)."""
    mean, log_std = self.distribution(params, obs)
    if rule == "mean_applied":
      return expected_applied_action(mean, log_std)
    return mean


EVAL_ACTIONS = ("clip_mean", "mean_applied")
"""How a Gaussian policy over an action box it is clipped to acts without noise:

* ``clip_mean``: clip(mean), the median of the control the physics receives; what SB3 (hence
  imitation) and brax evaluate. Where the mean has drifted past the box, this is the box's corner
  every step although the training policy's noise still reached inside it.
* ``mean_applied``: E[clip(a)], a ~ N(mean, std): the mean of the control the physics receives
  under the policy that was trained (closed form below)."""


def expected_applied_action(mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """E[clip(a, -1, 1)] for a ~ N(mean, exp(log_std)^2), per action dimension.

  With lo = (-1 - mean)/std, hi = (1 - mean)/std, Phi/phi the standard normal cdf/pdf:
  -Phi(lo) + (1 - Phi(hi)) + mean (Phi(hi) - Phi(lo)) + std (phi(lo) - phi(hi))."""
  std = jnp.exp(log_std)
  lo, hi = (-1.0 - mean) / std, (1.0 - mean) / std
  cdf, pdf = jax.scipy.stats.norm.cdf, jax.scipy.stats.norm.pdf
  inside = mean * (cdf(hi) - cdf(lo)) + std * (pdf(lo) - pdf(hi))
  return jnp.clip(inside - cdf(lo) + (1.0 - cdf(hi)), -1.0, 1.0)


def rollout(agent: Agent, env: Hopper, params: AgentParams, env_state: EnvState, key: jax.Array,
            length: int) -> tuple[EnvState, Transition]:
  """Steps the batched envs ``length`` times under the stochastic policy.

  env_state: batched over B envs. Returns the final state and Transition[length, B].
  Finished episodes are restarted in place (``Hopper.auto_reset``).
  """
  step = jax.vmap(env.step)
  reset = jax.vmap(env.auto_reset)

  def one_step(state: EnvState, step_key):
    action, log_prob = agent.act(params, state.obs, step_key)
    nxt = step(state, action)
    tr = Transition(
        obs=state.obs, action=action, log_prob=log_prob, value=agent.value(params, state.obs),
        next_obs=nxt.obs, next_value=agent.value(params, nxt.obs), terminated=nxt.terminated,
        done=nxt.done, qpos=state.data.qpos, qvel=state.data.qvel, true_reward=nxt.true_reward,
        episode_return=jnp.where(nxt.done, nxt.episode_return, 0.0), episode_step=state.t)
    return reset(nxt), tr

  return jax.lax.scan(one_step, env_state, jax.random.split(key, length))


def compute_gae(rewards, values, next_values, terminated, done, discount, gae_lambda):
  """Generalised advantage estimation over the time axis (axis 0); other axes broadcast.

  delta_t = r_t + discount * (1 - terminated_t) * V(s'_t) - V(s_t)
  A_t     = delta_t + discount * gae_lambda * (1 - done_t) * A_{t+1},   A_T = 0
  returns: (advantages [T, ...], value targets A + V [T, ...])

  ``V(s'_t)`` is the value of the observation after step t before any reset, so episodes cut by
  the time limit are bootstrapped and episodes ended by failure are not.
  """
  not_term = 1.0 - terminated.astype(rewards.dtype)
  not_done = 1.0 - done.astype(rewards.dtype)
  deltas = rewards + discount * not_term * next_values - values

  def backward(adv_next, xs):
    delta, nd = xs
    adv = delta + discount * gae_lambda * nd * adv_next
    return adv, adv

  _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, not_done),
                               reverse=True)
  return advantages, advantages + values


@struct.dataclass
class Batch:
  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  advantage: jax.Array
  target: jax.Array


def entropy_weight(agent: Agent, opt_state) -> jax.Array:
  """The entropy bonus's weight for the next update: ``entropy_cost``, or, with
  ``anneal_entropy``, that decayed linearly to 0 over the run's optimiser steps (the
  learning-rate schedule's clock, read from Adam's step count in ``opt_state``)."""
  cfg = agent.cfg
  if not cfg.anneal_entropy:
    return jnp.float32(cfg.entropy_cost)
  (_, done), *_ = optax.tree_utils.tree_get_all_with_path(opt_state, "count")
  return cfg.entropy_cost * jnp.clip(1.0 - done / agent.total_updates, 0.0, 1.0)


def ppo_loss(params: AgentParams, batch: Batch, *, agent: Agent, entropy_cost=None):
  """Clipped-surrogate PPO loss on a minibatch.

  ratio   = exp(log pi(a|s) - log pi_old(a|s))
  L_pi    = -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))
  L_v     = 0.5 * mean((V(s) - target)^2)
  L_box   = mean(sum_dims max(|mean(s)| - 1, 0)^2)   (the mean's excursion past the box)
  loss    = L_pi + value_cost * L_v - entropy_cost * mean(H[pi(.|s)]) + bounds_cost * L_box
  Advantages are normalised per minibatch when ``normalize_advantages``. ``entropy_cost``
  defaults to the config's (``entropy_weight`` gives the annealed one).
  """
  cfg = agent.cfg
  entropy_cost = cfg.entropy_cost if entropy_cost is None else entropy_cost
  mean, log_std = agent.distribution(params, batch.obs)
  log_prob = networks.gaussian_log_prob(batch.action, mean, log_std)
  adv = batch.advantage
  if cfg.normalize_advantages:
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  log_ratio = log_prob - batch.log_prob
  ratio = jnp.exp(log_ratio)
  policy_loss = -jnp.mean(jnp.minimum(ratio * adv,
                                      jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv))
  value_loss = 0.5 * jnp.mean((agent.value(params, batch.obs) - batch.target) ** 2)
  entropy = jnp.mean(networks.gaussian_entropy(log_std))
  loss = policy_loss + cfg.value_cost * value_loss - entropy_cost * entropy
  if cfg.bounds_cost > 0:
    loss = loss + cfg.bounds_cost * box_excursion(mean)
  metrics = {"ppo/policy_loss": policy_loss, "ppo/value_loss": value_loss,
             "ppo/entropy": entropy, "ppo/approx_kl": jnp.mean((ratio - 1) - log_ratio),
             "ppo/clip_frac": jnp.mean(jnp.abs(ratio - 1) > cfg.clip_eps),
             "ppo/mean_outside_box": jnp.mean(jnp.abs(mean) > 1.0)}
  return loss, metrics


def box_excursion(mean: jax.Array) -> jax.Array:
  """mean over samples of sum over action dims of max(|mean| - 1, 0)^2: how far the policy's
  mean [N, A] has left the action box."""
  return jnp.mean(jnp.sum(jnp.maximum(jnp.abs(mean) - 1.0, 0.0) ** 2, axis=-1))


def trainable(params: AgentParams):
  """The weights the optimiser updates (observation statistics are not trained)."""
  return {"policy": params.policy, "value": params.value}


def minibatch_step(agent: Agent, entropy_cost, carry, minibatch: Batch):
  params, opt_state = carry

  def loss_of_weights(weights):
    return ppo_loss(params.replace(**weights), minibatch, agent=agent, entropy_cost=entropy_cost)

  grads, metrics = jax.grad(loss_of_weights, has_aux=True)(trainable(params))
  updates, opt_state = agent.optimizer.update(grads, opt_state, trainable(params))
  params = params.replace(**optax.apply_updates(trainable(params), updates))
  return (params, opt_state), metrics


def epoch_step(agent: Agent, entropy_cost, carry, key, batch: Batch):
  cfg = agent.cfg
  perm = jax.random.permutation(key, cfg.batch_size)
  shuffled = jax.tree.map(
      lambda x: x[perm].reshape(cfg.num_minibatches, cfg.minibatch_size, *x.shape[1:]), batch)
  return jax.lax.scan(functools.partial(minibatch_step, agent, entropy_cost), carry, shuffled)


def update(agent: Agent, params: AgentParams, opt_state, transitions: Transition,
           rewards: jax.Array, key: jax.Array, entropy_cost=None):
  """GAE on ``rewards`` [T, B], then the clipped-objective epochs. Returns (params, opt_state,
  metrics). Observation statistics are updated from this batch before the epochs.
  ``entropy_cost``: the bonus's weight for these epochs (default the config's)."""
  cfg = agent.cfg
  advantages, targets = compute_gae(rewards * cfg.reward_scale, transitions.value,
                                    transitions.next_value, transitions.terminated,
                                    transitions.done, cfg.discount, cfg.gae_lambda)
  flat = lambda x: x.reshape(cfg.batch_size, *x.shape[2:])
  batch = Batch(obs=flat(transitions.obs), action=flat(transitions.action),
                log_prob=flat(transitions.log_prob), advantage=flat(advantages),
                target=flat(targets))
  if cfg.normalize_observations:
    params = params.replace(
        obs_stats=running_stats.update(params.obs_stats, batch.obs))
  # The value/policy networks see observations through the new statistics: the behaviour
  # log-probs were taken under the old ones, which the clipped ratio tolerates (as brax does).
  (params, opt_state), metrics = jax.lax.scan(
      lambda c, k: epoch_step(agent, entropy_cost, c, k, batch), (params, opt_state),
      jax.random.split(key, cfg.num_epochs))
  metrics = jax.tree.map(jnp.mean, metrics)
  metrics["ppo/reward_mean"] = jnp.mean(rewards)
  return params, opt_state, metrics


def init_state(agent: Agent, env: Hopper, key: jax.Array) -> PPOState:
  k_agent, k_env, k_state, k_stagger = jax.random.split(key, 4)
  params = agent.init(k_agent)
  env_state = jax.vmap(env.train_reset)(jax.random.split(k_env, agent.cfg.num_envs))
  env_state = jax.vmap(env.stagger)(env_state, jax.random.split(k_stagger, agent.cfg.num_envs))
  return PPOState(params=params, opt_state=agent.optimizer.init(trainable(params)), env_state=env_state,
                  key=k_state, env_steps=jnp.zeros((), jnp.int32))


def reset_nets(agent: Agent, state: PPOState, fresh: AgentParams) -> PPOState:
  """The agent restarted from ``fresh`` nets (``ppo.reset_at``; e.g. ``agent.init(key)``):
  observation statistics, env batch and key are kept; Adam's moments restart and its step
  counts (the learning-rate schedule's clock) carry on."""
  fresh = fresh.replace(obs_stats=state.params.obs_stats)
  fresh_opt = agent.optimizer.init(trainable(fresh))
  # integer scalars in the optimiser state are step counts; everything else is a moment
  keep_counts = lambda new, old: old if jnp.issubdtype(old.dtype, jnp.integer) else new
  opt_state = jax.tree.map(keep_counts, fresh_opt, state.opt_state)
  return state.replace(params=fresh, opt_state=opt_state)


def train_step(agent: Agent, env: Hopper, state: PPOState, reward_fn, reward_params=None,
               whole_batch=None):
  """One PPO iteration: rollout -> rewards -> update. Pure; jit it or scan it.

  reward_fn(reward_params, transitions) -> (rewards [T, B], reward_params): the reward and the
  reward function's parameters after seeing this batch (e.g. running normalisation statistics;
  a stateless reward returns them unchanged). For the true reward, use ``true_reward_fn``.
  whole_batch(transitions) -> transitions, applied between the rollout and the rest: where a
  layout splits the envs over devices, it hands every device the whole batch
  (``layout.Layout.whole``), so the rollout runs split and everything after it runs whole on
  each device. None: nothing.
  Returns (state, transitions, metrics, reward_params).
  """
  key, k_roll, k_upd = jax.random.split(state.key, 3)
  env_state, tr = rollout(agent, env, state.params, state.env_state, k_roll,
                          agent.cfg.unroll_length)
  if whole_batch is not None:
    tr = whole_batch(tr)
  rewards, reward_params = reward_fn(reward_params, tr)
  entropy_cost = entropy_weight(agent, state.opt_state)
  params, opt_state, metrics = update(agent, state.params, state.opt_state, tr, rewards, k_upd,
                                      entropy_cost)
  metrics["ppo/entropy_cost"] = entropy_cost
  n_done = jnp.sum(tr.done)
  metrics["train/episodes"] = n_done
  metrics["train/episode_return"] = jnp.sum(tr.episode_return) / jnp.maximum(n_done, 1)
  metrics["train/true_reward"] = jnp.mean(tr.true_reward)
  state = PPOState(params=params, opt_state=opt_state, env_state=env_state, key=key,
                   env_steps=state.env_steps + agent.cfg.batch_size)
  return state, tr, metrics, reward_params


def true_reward_fn(params, transitions: Transition):
  """Reward for PPO on the task itself (baselines): the oracle's score."""
  return transitions.true_reward, params


@struct.dataclass
class Evaluation:
  """Deterministic-policy episodes, every return the Hopper literature uses; leaves [E] unless
  marked. One rollout of ``length`` steps per episode yields all of them:

  * ``task_return``: the env's own task score (what the true-reward arm optimises; in gym mode
    summed until termination);
  * ``seals_return``: forward + 1 per healthy step - 1e-3 |a|^2 over all ``length`` steps, no
    termination (seals/Hopper-v1, what imitation reports);
  * ``gym_return``: Gym's Hopper reward summed until the first unhealthy step (inclusive), i.e.
    the return under Gym's termination rules;
  * ``healthy_fraction``: share of the ``length`` steps inside Gym's healthy range;
  * ``forward_speed``: metres travelled forward per second over the episode.
  """

  task_return: jax.Array
  seals_return: jax.Array
  gym_return: jax.Array
  gym_length: jax.Array        # steps until Gym would have terminated the episode
  healthy_fraction: jax.Array
  forward_speed: jax.Array
  qpos: jax.Array              # [L, E, 6] trace, for videos and for counting flips
  alive: jax.Array             # [L, E] bool, steps before the task's termination


def evaluate(agent: Agent, env: Hopper, params: AgentParams, key: jax.Array,
             num_episodes: int = 10, length: int | None = None,
             action_rule: str = "clip_mean") -> Evaluation:
  """Deterministic-policy evaluation: ``num_episodes`` episodes of ``length`` steps (default
  the env's episode length), the policy acting by ``action_rule`` (``EVAL_ACTIONS``), scored
  by every definition in ``Evaluation``."""
  cfg = env.cfg
  length = length or cfg.episode_length
  states = jax.vmap(env.reset)(jax.random.split(key, num_episodes))
  step = jax.vmap(env.step)
  healthy_of = jax.vmap(lambda q, v: is_healthy(q, v, cfg))
  seals = jax.vmap(lambda q, a, nq, h: tasks.seals_reward(q, a, nq, cfg.dt, h))
  gym = jax.vmap(lambda q, a, nq: tasks.gym_reward(q, a, nq, cfg.dt))

  def one_step(carry, _):
    state, alive, gym_alive = carry
    action = applied_action(agent.deterministic_action(params, state.obs, action_rule))
    nxt = step(state, action)
    healthy = healthy_of(nxt.data.qpos, nxt.data.qvel)
    q, nq = state.data.qpos, nxt.data.qpos
    out = (jnp.where(alive, nxt.true_reward, 0.0), seals(q, action, nq, healthy),
           jnp.where(gym_alive, gym(q, action, nq), 0.0), gym_alive, healthy, alive, q)
    return (nxt, alive & ~nxt.terminated, gym_alive & healthy), out

  ones = jnp.ones(num_episodes, bool)
  (last, _, _), (task, seals_r, gym_r, gym_alive, healthy, alive, qpos) = jax.lax.scan(
      one_step, (states, ones, ones), length=length)
  return Evaluation(
      task_return=task.sum(0), seals_return=seals_r.sum(0), gym_return=gym_r.sum(0),
      gym_length=gym_alive.sum(0), healthy_fraction=healthy.mean(0),
      forward_speed=(last.data.qpos[:, 0] - qpos[0, :, 0]) / (length * cfg.dt),
      qpos=qpos, alive=alive)
