"""PPO: GAE and the clipped loss on hand-worked numbers; a short run raises the true return."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlhp_jax import core, networks, ppo
from rlhp_jax.config_errors import ConfigError
from rlhp_jax.envs import hopper
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.preferences import PreferenceConfig


def test_gae_hand_worked():
  # T = 3, one env. discount 0.9, lambda 0.5.
  rewards = jnp.array([1.0, 2.0, 3.0])
  values = jnp.array([0.5, 1.0, 1.5])
  next_values = jnp.array([1.0, 1.5, 2.0])
  # step 1 ends the episode by the time limit (bootstrapped), step 2 by failure (not bootstrapped)
  terminated = jnp.array([False, False, True])
  done = jnp.array([False, True, True])
  adv, target = ppo.compute_gae(rewards, values, next_values, terminated, done, 0.9, 0.5)
  d2 = 3.0 + 0.0 - 1.5                  # 1.5
  d1 = 2.0 + 0.9 * 1.5 - 1.0            # 2.35
  d0 = 1.0 + 0.9 * 1.0 - 0.5            # 1.4
  a2 = d2
  a1 = d1                               # done at step 1: no carry from step 2
  a0 = d0 + 0.9 * 0.5 * a1              # 1.4 + 0.45 * 2.35 = 2.4575
  np.testing.assert_allclose(adv, [a0, a1, a2], rtol=1e-6)
  np.testing.assert_allclose(target, [a0 + 0.5, a1 + 1.0, a2 + 1.5], rtol=1e-6)
  # batched over envs (trailing axis) gives the same per env
  adv_b, _ = ppo.compute_gae(jnp.stack([rewards] * 2, 1), jnp.stack([values] * 2, 1),
                             jnp.stack([next_values] * 2, 1), jnp.stack([terminated] * 2, 1),
                             jnp.stack([done] * 2, 1), 0.9, 0.5)
  np.testing.assert_allclose(adv_b[:, 1], [a0, a1, a2], rtol=1e-6)


def test_ppo_loss_hand_worked():
  cfg = ppo.PPOConfig(num_envs=1, unroll_length=3, num_minibatches=1, clip_eps=0.2,
                      normalize_advantages=False, value_cost=0.5, entropy_cost=0.01,
                      init_log_std=-0.5, normalize_observations=False)
  agent = ppo.Agent(cfg, obs_size=11, action_size=3)
  params = agent.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (3, 11))
  action = jax.random.normal(jax.random.PRNGKey(2), (3, 3))
  mean, log_std = agent.distribution(params, obs)
  new_logp = networks.gaussian_log_prob(action, mean, log_std)
  ratios = jnp.array([1.5, 0.5, 1.1])
  values = agent.value(params, obs)
  batch = ppo.Batch(obs=obs, action=action, log_prob=new_logp - jnp.log(ratios),
                    advantage=jnp.array([1.0, -1.0, 2.0]),
                    target=values + jnp.array([1.0, 2.0, 3.0]))
  loss, m = ppo.ppo_loss(params, batch, agent=agent)
  # min(r A, clip(r) A): 1.5*1 -> 1.2 ; 0.5*-1 -> -0.8 ; 1.1*2 -> 2.2
  policy_loss = -(1.2 - 0.8 + 2.2) / 3
  value_loss = 0.5 * (1 + 4 + 9) / 3
  entropy = 3 * (-0.5 + 0.5 * np.log(2 * np.pi * np.e))
  np.testing.assert_allclose(m["ppo/policy_loss"], policy_loss, rtol=1e-5)
  np.testing.assert_allclose(m["ppo/value_loss"], value_loss, rtol=1e-5)
  np.testing.assert_allclose(m["ppo/entropy"], entropy, rtol=1e-5)
  np.testing.assert_allclose(loss, policy_loss + 0.5 * value_loss - 0.01 * entropy, rtol=1e-5)
  np.testing.assert_allclose(m["ppo/clip_frac"], 2 / 3, rtol=1e-6)


def test_gaussian_log_prob_matches_scipy_formula():
  x, mu, ls = jnp.array([0.3, -1.0]), jnp.array([0.0, 0.5]), jnp.array([0.0, -1.0])
  sd = np.exp(np.asarray(ls))
  expected = np.sum(-0.5 * ((np.asarray(x) - np.asarray(mu)) / sd) ** 2 - np.log(sd)
                    - 0.5 * np.log(2 * np.pi))
  np.testing.assert_allclose(networks.gaussian_log_prob(x, mu, ls), expected, rtol=1e-6)


def test_bounded_mean_keeps_the_deterministic_action_inside_the_box():
  # Same parameters, two policies: the unbounded one's mean leaves [-1, 1] once the last
  # layer is scaled up; the bounded one's is its tanh, strictly inside the box.
  cfg = ppo.PPOConfig(policy_hidden=(8,), value_hidden=(8,))
  plain = ppo.Agent(cfg, obs_size=11, action_size=3)
  bounded = ppo.Agent(dataclasses.replace(cfg, bounded_mean=True), obs_size=11, action_size=3)
  params = plain.init(jax.random.PRNGKey(0))
  big = jax.tree_util.tree_map_with_path(
      lambda path, x: x * 150.0 if "Dense_1" in jax.tree_util.keystr(path) else x,
      params.policy)
  params = params.replace(policy=big)
  obs = jax.random.normal(jax.random.PRNGKey(1), (32, 11)) * 3.0
  raw = plain.deterministic_action(params, obs)
  squashed = bounded.deterministic_action(params, obs)
  assert float(jnp.abs(raw).max()) > 1.5
  np.testing.assert_allclose(squashed, jnp.tanh(raw), rtol=1e-6)
  assert float(jnp.abs(squashed).max()) < 1.0
  # sampling and log-probs are about the squashed mean: noise is added after the tanh
  action, log_prob = bounded.act(params, obs, jax.random.PRNGKey(2))
  _, log_std = bounded.distribution(params, obs)
  np.testing.assert_allclose(log_prob, networks.gaussian_log_prob(action, squashed, log_std),
                             rtol=1e-5)


def test_min_log_std_floors_the_training_noise_and_leaves_the_deterministic_policy():
  # Same parameters with the log-std parameter pushed to -3: the plain agent samples with std
  # e^-3, the floored one (min_log_std=-1) with e^-1, in sampling, log-probs and the entropy;
  # the parameter below the floor gets no gradient. Above the floor the two agree exactly, and
  # the deterministic action never depends on the floor.
  cfg = ppo.PPOConfig(num_envs=4, unroll_length=8, num_minibatches=1, policy_hidden=(8,),
                      value_hidden=(8,), normalize_observations=False)
  plain = ppo.Agent(cfg, obs_size=11, action_size=3)
  floored = ppo.Agent(dataclasses.replace(cfg, min_log_std=-1.0), obs_size=11, action_size=3)
  params = plain.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (4096, 11))
  # above the floor (init -0.5): the same distribution to the last bit
  for a, b in zip(plain.distribution(params, obs), floored.distribution(params, obs)):
    np.testing.assert_array_equal(a, b)
  low = params.replace(policy=jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.full_like(x, -3.0) if "log_std" in jax.tree_util.keystr(path) else x,
      params.policy))
  mean_p, log_std_p = plain.distribution(low, obs)
  mean_f, log_std_f = floored.distribution(low, obs)
  np.testing.assert_array_equal(mean_p, mean_f)
  np.testing.assert_allclose(log_std_p, -3.0)
  np.testing.assert_allclose(log_std_f, -1.0)
  np.testing.assert_array_equal(plain.deterministic_action(low, obs),
                                floored.deterministic_action(low, obs))
  key = jax.random.PRNGKey(2)
  a_p, lp_p = plain.act(low, obs, key)
  a_f, lp_f = floored.act(low, obs, key)
  np.testing.assert_allclose(np.std(np.asarray(a_f - mean_f)), np.exp(-1.0), rtol=0.03)
  np.testing.assert_allclose(np.std(np.asarray(a_p - mean_p)), np.exp(-3.0), rtol=0.03)
  floor = jnp.full_like(mean_f, -1.0)
  np.testing.assert_allclose(lp_f, networks.gaussian_log_prob(a_f, mean_f, floor), rtol=1e-5)
  batch = ppo.Batch(obs=obs[:32], action=a_f[:32], log_prob=lp_f[:32],
                    advantage=jax.random.normal(jax.random.PRNGKey(3), (32,)),
                    target=jnp.zeros(32))
  _, m_f = ppo.ppo_loss(low, batch, agent=floored)
  np.testing.assert_allclose(m_f["ppo/entropy"],
                             float(networks.gaussian_entropy(jnp.full(3, -1.0))), rtol=1e-5)
  grad_log_std = lambda agent: jax.tree.leaves({
      k: v for k, v in jax.grad(lambda p: ppo.ppo_loss(p, batch, agent=agent)[0])(low)
      .policy["params"].items() if "log_std" in k})[0]
  assert float(jnp.abs(grad_log_std(plain)).sum()) > 0.0
  np.testing.assert_array_equal(grad_log_std(floored), 0.0)
  for bad in (float("nan"), float("inf"), "low", True):
    with pytest.raises(ConfigError, match="ppo.min_log_std"):
      ppo.PPOConfig(min_log_std=bad)


def test_bounds_cost_charges_the_mean_past_the_box_and_pulls_it_back():
  # Same parameters scaled so the mean leaves [-1, 1]; the loss with bounds_cost differs from
  # the plain loss by exactly bounds_cost * mean(sum max(|mean| - 1, 0)^2), and a few Adam steps
  # on the bounds term alone bring the mean inside the box (where it adds nothing).
  cfg = ppo.PPOConfig(num_envs=4, unroll_length=8, num_minibatches=1, policy_hidden=(8,),
                      value_hidden=(8,), normalize_observations=False)
  plain = ppo.Agent(cfg, obs_size=11, action_size=3)
  boxed = ppo.Agent(dataclasses.replace(cfg, bounds_cost=0.5), obs_size=11, action_size=3)
  params = plain.init(jax.random.PRNGKey(0))
  big = jax.tree_util.tree_map_with_path(
      lambda path, x: x * 400.0 if "Dense_1" in jax.tree_util.keystr(path) else x, params.policy)
  params = params.replace(policy=big)
  obs = jax.random.normal(jax.random.PRNGKey(1), (32, 11))
  mean, log_std = plain.distribution(params, obs)
  action = mean + jnp.exp(log_std) * jax.random.normal(jax.random.PRNGKey(2), mean.shape)
  batch = ppo.Batch(obs=obs, action=action,
                    log_prob=networks.gaussian_log_prob(action, mean, log_std),
                    advantage=jax.random.normal(jax.random.PRNGKey(3), (32,)),
                    target=jnp.zeros(32))
  excursion = np.mean(np.sum(np.maximum(np.abs(np.asarray(mean)) - 1.0, 0.0) ** 2, axis=-1))
  assert excursion > 1.0
  loss_plain, m_plain = ppo.ppo_loss(params, batch, agent=plain)
  loss_boxed, m_boxed = ppo.ppo_loss(params, batch, agent=boxed)
  np.testing.assert_allclose(loss_boxed - loss_plain, 0.5 * excursion, rtol=1e-4)
  np.testing.assert_allclose(m_plain["ppo/mean_outside_box"],
                             np.mean(np.abs(np.asarray(mean)) > 1.0), rtol=1e-6)
  with pytest.raises(Exception, match="ppo.bounds_cost"):
    ppo.PPOConfig(bounds_cost=-1.0)

  # descent on the bounds term alone: the mean comes back inside the box and stays there
  opt = optax.adam(1e-2)
  box_loss = lambda w: ppo.box_excursion(boxed.policy_net.apply(w, obs)[0])

  @jax.jit
  def step(w, opt_state):
    updates, opt_state = opt.update(jax.grad(box_loss)(w), opt_state, w)
    return optax.apply_updates(w, updates), opt_state

  weights = params.policy
  state = opt.init(weights)
  for _ in range(300):
    weights, state = step(weights, state)
  after = boxed.policy_net.apply(weights, obs)[0]
  assert float(jnp.abs(after).max()) < 1.05
  assert float(box_loss(weights)) < 1e-3 * excursion


def test_short_ppo_run_raises_true_return():
  """~120k env steps of PPO on gym-style Hopper: the deterministic policy's true return rises
  well above the untrained policy's (which falls over at once, ~10-80)."""
  cfg = ExperimentConfig(
      name="ppo_smoke", reward_source="true", env=hopper.HopperConfig(mode="gym"),
      ppo=ppo.PPOConfig(num_envs=32, unroll_length=64, num_epochs=5, num_minibatches=4,
                        reward_scale=0.1),
      run=RunConfig(total_env_steps=32 * 64 * 60, iterations_per_call=20, eval_episodes=5))
  system = core.RLHP(cfg)
  state = jax.jit(system.init)(jax.random.PRNGKey(0))
  evaluate = jax.jit(system.evaluate)
  before = float(evaluate(state, jax.random.PRNGKey(9)).task_return.mean())
  chunk = jax.jit(system.chunk)
  for _ in range(3):
    state, metrics = chunk(state, cfg.teacher.params())
  after = float(evaluate(state, jax.random.PRNGKey(9)).task_return.mean())
  assert np.isfinite(np.asarray(metrics.mean["ppo/policy_loss"])).all()
  assert int(state.ppo.env_steps) == 32 * 64 * 60
  assert after > before + 100, (before, after)


def test_evaluation_reports_every_return_by_its_definition():
  """One deterministic rollout scored four ways, checked against the qpos trace by hand: the
  seals-style return (forward + 1 per healthy step, no termination), the Gym-rules return (up
  to and including the first unhealthy step), the healthy fraction and the forward speed."""
  from rlhp_jax.envs import hopper
  env = hopper.make(hopper.HopperConfig(mode="fixed_horizon", episode_length=150, ctrl_cost=0.0,
                                        unhealthy_penalty=2.0))
  agent = ppo.Agent(ppo.PPOConfig(num_envs=4, unroll_length=8, num_minibatches=1),
                    hopper.OBS_SIZE, hopper.ACTION_SIZE)
  params = agent.init(jax.random.PRNGKey(1))
  evaluations = {rule: jax.jit(lambda k: ppo.evaluate(agent, env, params, k, num_episodes=3,
                                                      length=150, action_rule=rule))(
                     jax.random.PRNGKey(2)) for rule in ppo.EVAL_ACTIONS}
  # the two noiseless rules act differently (the untrained mean sits inside the box with noise
  # std 0.6: the mean of the clipped control is pulled towards 0) from the same start
  traces = [np.asarray(e.qpos) for e in evaluations.values()]
  np.testing.assert_allclose(traces[0][0], traces[1][0])
  assert np.abs(traces[0][20:] - traces[1][20:]).max() > 1e-3
  for ev in evaluations.values():
    check_evaluation(ev, env)


def check_evaluation(ev, env):
  qpos = np.asarray(ev.qpos)                                        # [L, E, 6] before each step
  assert qpos.shape == (150, 3, 6)
  healthy = np.asarray(ev.healthy_fraction)
  assert ((0 <= healthy) & (healthy <= 1)).all()
  n = np.asarray(ev.gym_length)
  assert (n < 150).all(), "an untrained policy falls within 150 steps"
  dt = env.cfg.dt
  for e in range(3):
    # Gym-rules return: forward progress over the first n steps + 1 per step, less the tiny
    # control cost (actions in [-1, 1]^3: at most 3e-3 a step)
    forward = (qpos[n[e], e, 0] - qpos[0, e, 0]) / dt
    assert abs(float(ev.gym_return[e]) - (forward + n[e])) <= 3e-3 * n[e] + 1e-2
  # the fixed-horizon task pays nothing while unhealthy and charges the penalty: below seals
  assert (np.asarray(ev.task_return) < np.asarray(ev.seals_return)).all()
  assert np.isfinite(np.asarray(ev.forward_speed)).all()


def test_mean_applied_action_is_the_mean_of_the_clipped_gaussian():
  """The closed form of E[clip(a, -1, 1)], a ~ N(mean, std^2), against Monte Carlo; inside the
  box with little noise it is the mean, far past it the corner, and in between it lies inside."""
  mean = jnp.array([0.0, 0.3, 1.2, -2.5, 4.0, 0.95])
  log_std = jnp.log(jnp.array([0.5, 0.05, 0.5, 0.6, 0.4, 0.63]))
  exact = np.asarray(ppo.expected_applied_action(mean, log_std))
  draws = mean + jnp.exp(log_std) * jax.random.normal(jax.random.PRNGKey(0), (400_000, 6))
  np.testing.assert_allclose(exact, np.asarray(jnp.clip(draws, -1, 1).mean(0)), atol=3e-3)
  assert abs(exact[1] - 0.3) < 1e-6 and exact[4] > 0.99
  assert 0.0 < exact[2] < 0.9 and exact[5] < 0.8       # clip(mean) would be 1.0 and 0.95
  agent = ppo.Agent(ppo.PPOConfig(policy_hidden=(8,), value_hidden=(8,)), 11, 3)
  params = agent.init(jax.random.PRNGKey(1))
  obs = jax.random.normal(jax.random.PRNGKey(2), (5, 11))
  m, ls = agent.distribution(params, obs)
  np.testing.assert_allclose(agent.deterministic_action(params, obs, "mean_applied"),
                             ppo.expected_applied_action(m, ls), rtol=1e-6)
  np.testing.assert_allclose(agent.deterministic_action(params, obs), m, rtol=1e-6)


def test_entropy_bonus_anneals_to_zero_on_the_optimiser_clock():
  cfg = ppo.PPOConfig(num_envs=2, unroll_length=4, num_epochs=2, num_minibatches=2,
                      entropy_cost=0.01, anneal_entropy=True, normalize_observations=False)
  agent = ppo.Agent(cfg, obs_size=11, action_size=3, total_updates=8)
  opt_state = agent.optimizer.init(ppo.trainable(agent.init(jax.random.PRNGKey(0))))
  np.testing.assert_allclose(ppo.entropy_weight(agent, opt_state), 0.01)
  steps = [ppo.entropy_weight(agent, jax.tree.map(
      lambda x: jnp.full_like(x, k) if x.dtype == jnp.int32 else x, opt_state))
      for k in (2, 4, 8, 12)]
  np.testing.assert_allclose(steps, [0.0075, 0.005, 0.0, 0.0], atol=1e-9)
  constant = ppo.Agent(dataclasses.replace(cfg, anneal_entropy=False), 11, 3, 8)
  np.testing.assert_allclose(ppo.entropy_weight(constant, opt_state), 0.01)


def test_update_uses_the_entropy_weight_it_is_given():
  """The weight passed to ``update`` reaches the loss. With zero advantages only the bonus moves
  the log-std: the config's weight (1.0) raises it, a weight of 0 leaves it where it was."""
  cfg = ppo.PPOConfig(num_envs=2, unroll_length=4, num_epochs=1, num_minibatches=1,
                      entropy_cost=1.0, normalize_observations=False, learning_rate=1e-2)
  agent = ppo.Agent(cfg, obs_size=11, action_size=3)
  params = agent.init(jax.random.PRNGKey(0))
  opt_state = agent.optimizer.init(ppo.trainable(params))
  T, B = 4, 2
  tr = ppo.Transition(
      obs=jax.random.normal(jax.random.PRNGKey(1), (T, B, 11)),
      action=jax.random.normal(jax.random.PRNGKey(2), (T, B, 3)),
      log_prob=jnp.zeros((T, B)), value=jnp.zeros((T, B)),
      next_obs=jnp.zeros((T, B, 11)), next_value=jnp.zeros((T, B)),
      terminated=jnp.zeros((T, B), bool), done=jnp.zeros((T, B), bool),
      qpos=jnp.zeros((T, B, 6)), qvel=jnp.zeros((T, B, 6)), true_reward=jnp.zeros((T, B)),
      episode_return=jnp.zeros((T, B)), episode_step=jnp.zeros((T, B), jnp.int32))
  rewards = jnp.zeros((T, B))
  log_std = lambda p: jax.tree.leaves({k: v for k, v in p.policy["params"].items()
                                       if "log_std" in k})
  with_bonus, _, _ = ppo.update(agent, params, opt_state, tr, rewards, jax.random.PRNGKey(3))
  without, _, _ = ppo.update(agent, params, opt_state, tr, rewards, jax.random.PRNGKey(3), 0.0)
  total = lambda p: sum(jnp.sum(a) for a in log_std(p))
  grow = lambda p: float(total(p) - total(params))
  assert grow(with_bonus) > 0.0 > grow(without) - 1e-6


def first_kernel(policy_params):
  """The policy net's first weight matrix: enough to tell one draw of the nets from another."""
  return policy_params["params"]["MLP_0"]["Dense_0"]["kernel"]


def test_reset_nets_restarts_from_the_fresh_weights_and_keeps_statistics_and_the_clock():
  """``ppo.reset_nets``: the policy and value weights are exactly the fresh nets given, the
  observation statistics are the old ones, Adam's moments are zero again and its step
  counts (the learning-rate and entropy clocks) carry on."""
  cfg = ppo.PPOConfig(num_envs=2, unroll_length=4, num_epochs=1, num_minibatches=1,
                      reset_at=0.5)
  agent = ppo.Agent(cfg, obs_size=11, action_size=3, total_updates=10)
  params = agent.init(jax.random.PRNGKey(0))
  params = params.replace(obs_stats=params.obs_stats.replace(
      count=jnp.float32(7.0), mean=jnp.full((11,), 0.3), m2=jnp.full((11,), 2.0)))
  opt_state = agent.optimizer.init(ppo.trainable(params))
  grads = jax.tree.map(jnp.ones_like, ppo.trainable(params))
  for _ in range(3):
    updates, opt_state = agent.optimizer.update(grads, opt_state, ppo.trainable(params))
    params = params.replace(**optax.apply_updates(ppo.trainable(params), updates))
  state = ppo.PPOState(params=params, opt_state=opt_state, env_state=jnp.zeros(()),
                       key=jax.random.PRNGKey(5), env_steps=jnp.int32(96))
  fresh = agent.init(jax.random.PRNGKey(3))
  out = ppo.reset_nets(agent, state, fresh)
  for got, want in zip(jax.tree.leaves(ppo.trainable(out.params)),
                       jax.tree.leaves(ppo.trainable(fresh))):
    np.testing.assert_array_equal(got, want)
  assert not np.allclose(first_kernel(out.params.policy), first_kernel(params.policy))
  for got, want in zip(jax.tree.leaves(out.params.obs_stats), jax.tree.leaves(params.obs_stats)):
    np.testing.assert_array_equal(got, want)
  counts = [x for x in jax.tree.leaves(out.opt_state) if jnp.issubdtype(x.dtype, jnp.integer)]
  moments = [x for x in jax.tree.leaves(out.opt_state) if not jnp.issubdtype(x.dtype, jnp.integer)]
  assert counts and all(int(c) == 3 for c in counts)
  assert moments and all(float(jnp.abs(m).max()) == 0.0 for m in moments)
  np.testing.assert_allclose(ppo.entropy_weight(agent, out.opt_state),
                             ppo.entropy_weight(agent, opt_state))
  assert int(out.env_steps) == 96 and np.array_equal(out.key, state.key)


@pytest.mark.parametrize("source", ["preferences", "true"])
def test_reset_at_redraws_the_agent_once_in_the_iteration_that_reaches_its_share(source):
  """``ppo.reset_at``: ``RLHP.maybe_reset`` hands the iteration a fresh agent only when the RL
  steps taken before it first reach the share of the budget, for either reward source (the arms
  share one PPO); at 0 the agent passes through untouched."""
  cfg = ExperimentConfig(
      name="reset", reward_source=source,
      ppo=ppo.PPOConfig(num_envs=4, unroll_length=8, num_epochs=1, num_minibatches=1,
                        reset_at=0.25),
      prefs=PreferenceConfig(total_labels=40, pairs_per_iteration=8, fragment_length=4),
      run=RunConfig(total_env_steps=4 * 8 * 4 * 64, iterations_per_call=1))
  system = core.RLHP(cfg)
  state = system.init(jax.random.PRNGKey(0))
  step = int(round(0.25 * system.rl_env_step_budget))
  per = system.iteration_env_steps
  first = -(-step // per) * per   # RL steps come in whole iterations: the first count >= step
  assert step > 0 and first - per < step <= first

  def policy_after(rl_steps):
    s = state.replace(rl_env_steps=jnp.int32(rl_steps))
    return s, first_kernel(system.maybe_reset(s).params.policy)

  old = first_kernel(state.ppo.params.policy)
  for rl_steps in (0, first - per, first + per, 2 * first):
    np.testing.assert_array_equal(policy_after(rl_steps)[1], old)
  s, redrawn = policy_after(first)
  assert not np.allclose(redrawn, old)
  want = ppo.reset_nets(system.agent, s.ppo, s.fresh_agent)
  np.testing.assert_array_equal(redrawn, first_kernel(want.params.policy))
  off = core.RLHP(dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, reset_at=0.0)))
  off_state = off.init(jax.random.PRNGKey(0))
  assert off_state.fresh_agent is None   # off, the state (and a checkpoint) is as before
  assert off.maybe_reset(off_state.replace(rl_env_steps=jnp.int32(first))) is off_state.ppo
  for bad in (1.0, -0.1):
    with pytest.raises(ConfigError, match="^ppo.reset_at: must be in \\[0, 1\\)"):
      ppo.PPOConfig(reset_at=bad)


@pytest.mark.parametrize("source", ["preferences", "true"])
def test_reset_at_reaches_the_iteration_that_trains_the_agent(source):
  """The iteration itself (jitted; the learned reward with its queries, or the task's reward)
  trains the fresh nets at the crossing: one update later the policy is still next to the
  fresh draw, while the same iteration one step past the crossing trains the old nets on."""
  cfg = ExperimentConfig(
      name="reset_wired", reward_source=source,
      ppo=ppo.PPOConfig(num_envs=4, unroll_length=8, num_epochs=1, num_minibatches=1,
                        reset_at=0.25),
      prefs=PreferenceConfig(total_labels=40, pairs_per_iteration=8, fragment_length=4),
      run=RunConfig(total_env_steps=4 * 8 * 64, iterations_per_call=1))
  system = core.RLHP(cfg)
  state = system.init(jax.random.PRNGKey(1))
  # past the initial labels, whose iterations keep the policy frozen
  state = state.replace(requested=jnp.int32(cfg.prefs.initial_labels))
  per = system.iteration_env_steps
  first = -(-int(round(0.25 * system.rl_env_step_budget)) // per) * per
  # an agent that has moved away from its initial draw, as it has by the crossing
  moved = state.ppo.params.replace(policy=jax.tree.map(lambda x: x + 0.5, state.ppo.params.policy))
  state = state.replace(ppo=state.ppo.replace(params=moved))
  step = jax.jit(system.iteration)
  kernel = lambda s: first_kernel(s.ppo.params.policy)
  fresh = first_kernel(state.fresh_agent.policy)
  at, _ = step(state.replace(rl_env_steps=jnp.int32(first)), cfg.teacher.params())
  past, _ = step(state.replace(rl_env_steps=jnp.int32(first + per)), cfg.teacher.params())
  assert float(jnp.abs(kernel(at) - fresh).max()) < 0.05
  assert float(jnp.abs(kernel(past) - fresh).mean()) > 0.3
