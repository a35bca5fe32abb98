"""Reward ensemble: Bradley-Terry with the noise term on hand-worked numbers, normalisation, the
L2 rule, and that training on a buffer learns the labels' order."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhp_jax import preferences, reward_model as rm


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_bradley_terry_with_noise_hand_worked():
  r1, r2 = jnp.array([2.0, 0.0, 1.0]), jnp.array([1.0, 3.0, 1.0])
  label = jnp.array([1.0, 1.0, 0.5])
  p = 0.9 * sigmoid(np.array([1.0, -3.0, 0.0])) + 0.05
  np.testing.assert_allclose(rm.preference_probability(r1, r2, 0.1), p, rtol=1e-6)
  nll = -(np.array([1, 1, 0.5]) * np.log(p) + np.array([0, 0, 0.5]) * np.log(1 - p))
  np.testing.assert_allclose(rm.bradley_terry_loss(r1, r2, label, jnp.ones(3), 0.1),
                             nll.mean(), rtol=1e-6)
  # weights mask pairs out; p = 0.70795 for the first pair by hand
  np.testing.assert_allclose(float(p[0]), 0.9 * 0.7310586 + 0.05, rtol=1e-6)
  np.testing.assert_allclose(rm.bradley_terry_loss(r1, r2, label, jnp.array([1.0, 0, 0]), 0.1),
                             -np.log(0.9 * 0.7310586 + 0.05), rtol=1e-5)
  # the noise term bounds the probability: a huge margin still costs -log(0.95)
  big = rm.bradley_terry_loss(jnp.array([100.0]), jnp.array([0.0]), jnp.array([0.0]),
                              jnp.ones(1), 0.1)
  np.testing.assert_allclose(big, -np.log(0.05), rtol=1e-5)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_bradley_terry_finite_at_any_margin(noise):
  """A confidently wrong pair costs about its margin, with a finite gradient, at rater_noise 0
  too (log(sigmoid) underflowed to -inf there: 4 of 8 seeds of a rater_noise=0 arm went NaN)."""
  r1, r2, label = jnp.array([0.0, 300.0]), jnp.array([300.0, 0.0]), jnp.array([1.0, 1.0])
  loss_fn = lambda a: rm.bradley_terry_loss(a, r2, label, jnp.array([1.0, 0.0]), noise)
  loss, grad = jax.value_and_grad(loss_fn)(r1)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
  want = 300.0 if noise == 0 else -np.log(0.05)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  # a confidently right pair costs nothing (noise 0) or -log(0.95) (the noise floor)
  right = rm.bradley_terry_loss(r1, r2, label, jnp.array([0.0, 1.0]), noise)
  np.testing.assert_allclose(float(right), 0.0 if noise == 0 else -np.log(0.95), atol=1e-6)
  # and the log-space form agrees with the probability on ordinary margins
  d = jnp.linspace(-5, 5, 11)
  log_p, log_q = rm.preference_log_probabilities(d, jnp.zeros(11), noise)
  p = rm.preference_probability(d, jnp.zeros(11), noise)
  np.testing.assert_allclose(np.exp(log_p), p, rtol=1e-5)
  np.testing.assert_allclose(np.exp(log_q), 1 - p, rtol=1e-5)


def test_adaptive_l2_rule():
  cfg = rm.RewardModelConfig(l2_low=1.1, l2_high=1.5, l2_factor=2.0)
  l2 = jnp.array([1e-3, 1e-3, 1e-3, 1e-3])
  ratio = jnp.array([2.0, 1.3, 1.0, 2.0])
  can = jnp.array([True, True, True, False])
  np.testing.assert_allclose(rm.adapt_l2(l2, ratio, can, cfg), [2e-3, 1e-3, 5e-4, 1e-3])


def test_adaptive_l2_has_a_floor_and_moves_smoothly():
  """Validation loss below 1.1x training loss for hundreds of updates (few labels) must not
  drive L2 to nothing, and one update moves it by the default factor only."""
  cfg = rm.RewardModelConfig()
  l2 = jnp.full((3,), cfg.l2_init)
  step = rm.adapt_l2(l2, jnp.full((3,), 1.0), jnp.ones(3, bool), cfg)
  np.testing.assert_allclose(step, l2 / cfg.l2_factor, rtol=1e-6)
  assert cfg.l2_factor <= 1.25
  for _ in range(500):
    l2 = rm.adapt_l2(l2, jnp.full((3,), 0.9), jnp.ones(3, bool), cfg)
  assert float(l2.min()) == pytest.approx(cfg.l2_min) and cfg.l2_min >= 1e-6
  with pytest.raises(Exception, match="l2_min"):
    rm.RewardModelConfig(l2_min=1e-3, l2_init=1e-4)


def test_training_loss_of_a_member_is_its_bootstrap_weighted_loss():
  """The L2 rule compares validation loss with the loss each member was fitted to: weighted by
  its own bootstrap multiplicities, not every training label once."""
  ens = rm.RewardEnsemble(rm.RewardModelConfig(ensemble_size=2), 11, 3)
  params = ens.init(jax.random.PRNGKey(0)).params
  k = jax.random.split(jax.random.PRNGKey(1), 3)
  n = 12
  obs = jax.random.normal(k[0], (n, 2, 3, 11))
  act = jax.random.normal(k[1], (n, 2, 3, 3))
  label = (jnp.arange(n) % 2).astype(jnp.float32)
  buf = preferences.init_buffer(16, 3, 11, 3, 2)
  buf = preferences.add(buf, obs, act, label, jnp.ones(n, bool), jnp.zeros((n, 2)), k[2], 0.0,
                        True)
  weight = jnp.stack([jnp.where(jnp.arange(16) < 6, 3.0, 0.0),
                      jnp.where(jnp.arange(16) < 6, 0.0, 1.0)]) * buf.filled()   # [K, C]
  out = rm.evaluate(ens, params, buf, weight)
  returns = ens.fragment_returns(params, buf.obs, buf.action)
  for m in range(2):
    w = np.asarray(weight[m])
    p = np.asarray(rm.preference_probability(returns[m, :, 0], returns[m, :, 1], 0.1))
    lab = np.asarray(buf.label)
    nll = -(lab * np.log(p) + (1 - lab) * np.log(1 - p))
    np.testing.assert_allclose(out["reward/train_nll_member"][m], (w * nll).sum() / w.sum(),
                               rtol=1e-5)
  # and the two members' losses differ, as their resamples do
  assert abs(float(out["reward/train_nll_member"][0] - out["reward/train_nll_member"][1])) > 1e-4


def test_reward_is_mean_of_normalised_members():
  ens = rm.RewardEnsemble(rm.RewardModelConfig(ensemble_size=3), 11, 3)
  state = ens.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (16, 8, 11))
  act = jax.random.normal(jax.random.PRNGKey(2), (16, 8, 3))
  raw = ens.member_rewards(state.params, obs, act)
  assert raw.shape == (3, 16, 8)
  members = (raw - raw.mean((1, 2), keepdims=True)) / raw.std((1, 2), keepdims=True)
  np.testing.assert_allclose(ens.reward(state.params, obs, act), members.mean(0), atol=1e-4)
  # members differ (independent inits)
  assert float(jnp.abs(raw[0] - raw[1]).mean()) > 1e-3


@pytest.fixture(scope="module")
def trained():
  """A buffer of 200 pairs labelled by the first observation feature summed over the fragment;
  the ensemble trains on it for a few hundred steps."""
  k = jax.random.split(jax.random.PRNGKey(3), 4)
  n, length = 200, 5
  obs = jax.random.normal(k[0], (n, 2, length, 11))
  act = jax.random.normal(k[1], (n, 2, length, 3))
  true = obs[..., 0].sum(-1)
  label = (true[:, 0] > true[:, 1]).astype(jnp.float32)
  cfg = rm.RewardModelConfig(ensemble_size=3, steps_per_iteration=300, validation_fraction=0.25)
  ens = rm.RewardEnsemble(cfg, 11, 3)
  buf = preferences.init_buffer(256, length, 11, 3, 3)
  buf = preferences.add(buf, obs, act, label, jnp.ones(n, bool), true, k[2], 0.25, True)
  state = ens.init(k[3])
  before = rm.evaluate(ens, state.params, buf)
  state, metrics = jax.jit(lambda s, b, key: rm.train(ens, s, b, key))(state, buf,
                                                                      jax.random.PRNGKey(9))
  return ens, buf, before, metrics


def test_training_learns_held_out_order(trained):
  _, buf, before, metrics = trained
  assert int(buf.count) == 200 and 20 < int(buf.is_val[:200].sum()) < 80
  assert float(metrics["reward/val_accuracy"]) > 0.85
  assert float(metrics["reward/val_nll"]) < float(before["reward/val_nll"])
  assert metrics["reward/l2"].shape == (3,)


def test_running_normalisation_of_member_rewards():
  """The reward PPO sees is normalised by running statistics: the first batch by its own mean
  and std, later batches move the statistics by ``rate`` only (a batch of a better policy is
  not re-centred to zero at once)."""
  norm = rm.init_norm(2)
  a = jnp.array([[1.0, 3.0], [10.0, 30.0]])                      # [K=2, N=2]
  norm = rm.update_norm(norm, a, 0.1)
  np.testing.assert_allclose(norm.mean, [2.0, 20.0], rtol=1e-6)
  np.testing.assert_allclose(norm.std, [1.0, 10.0], rtol=1e-5)
  np.testing.assert_allclose(rm.apply_norm(norm, a), [-1.0, 1.0], rtol=1e-5)
  b = a + jnp.array([[4.0], [40.0]])
  norm = rm.update_norm(norm, b, 0.1)                              # second batch weighs 1/2
  np.testing.assert_allclose(norm.mean, [4.0, 40.0], rtol=1e-6)
  for _ in range(20):
    norm = rm.update_norm(norm, b, 0.1)                            # then 1/3, 1/4, ... 0.1
  c = rm.update_norm(norm, b + 100.0, 0.1)                         # a jump moves it by 0.1
  np.testing.assert_allclose(c.mean - norm.mean, 0.1 * (b.mean(1) + 100.0 - norm.mean),
                             rtol=1e-4)
  assert float(c.batches) == 23


def test_wrong_shapes_fail_where_arrays_cross_modules():
  """preferences.add and reward_model.train check their arrays' shapes when traced (chex): a
  wrong one fails at once with a message naming the function and the argument."""
  k = jax.random.PRNGKey(0)
  n = 4
  buf = preferences.init_buffer(8, 3, 11, 3, 2)
  good = dict(obs=jnp.zeros((n, 2, 3, 11)), action=jnp.zeros((n, 2, 3, 3)), label=jnp.zeros(n),
              valid=jnp.ones(n, bool), oracle_return=jnp.zeros((n, 2)))
  add = lambda **kw: jax.jit(lambda b, a: preferences.add(b, **a, key=k, validation_fraction=0.0,
                                                          bootstrap=True))(buf, {**good, **kw})
  assert int(add().count) == n
  with pytest.raises(AssertionError, match=r"preferences.add: obs must be \[N, 2, L, D\]"):
    add(obs=jnp.zeros((n, 2, 5, 11)))                     # fragments of another length
  with pytest.raises(AssertionError, match="preferences.add: valid must be"):
    add(valid=jnp.ones(n + 1, bool))
  with pytest.raises(AssertionError, match="preferences.add: label must be"):
    add(label=jnp.zeros((n, 1)))
  ens = rm.RewardEnsemble(rm.RewardModelConfig(ensemble_size=2, steps_per_iteration=1,
                                               batch_size=2), 11, 3)
  state = ens.init(k)
  rm.train(ens, state, add(), k)
  with pytest.raises(AssertionError, match="reward_model.train: buffer.weight must be"):
    rm.train(ens, state, preferences.init_buffer(8, 3, 11, 3, 3), k)   # 3 weights, 2 members
  with pytest.raises(AssertionError, match="reward_model.train: buffer.obs must be"):
    rm.train(ens, state, preferences.init_buffer(8, 3, 12, 3, 2), k)   # another obs size
  with pytest.raises(AssertionError, match="fragment_returns: action must end in A = 3"):
    ens.fragment_returns(state.params, jnp.zeros((n, 2, 3, 11)), jnp.zeros((n, 2, 3, 4)))


def test_reward_nets_see_observations_standardised_by_running_statistics():
  """An observation dimension a thousand times larger (and shifted) gives the same rewards once
  the running statistics have seen it; without the option the raw observations go in."""
  ens = rm.RewardEnsemble(rm.RewardModelConfig(ensemble_size=2, hidden=(8,)), 3, 1)
  state = ens.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (200, 3))
  scaled = obs * jnp.array([1.0, 1000.0, 1.0]) + jnp.array([0.0, 50.0, 0.0])
  act = jnp.zeros((200, 1))
  rewards = lambda s, o: ens.member_rewards(s.params, ens.inputs(s.obs_stats, o), act)
  s1, s2 = ens.observe(state, obs), ens.observe(state, scaled)
  assert float(s1.obs_stats.count) == 200
  np.testing.assert_allclose(rewards(s1, obs), rewards(s2, scaled), atol=1e-4)
  raw = rm.RewardEnsemble(rm.RewardModelConfig(ensemble_size=2, hidden=(8,),
                                               normalize_inputs=False), 3, 1)
  np.testing.assert_array_equal(raw.inputs(s2.obs_stats, scaled), scaled)


def test_state_only_reward_nets_ignore_the_action():
  """``use_action=False``: the nets score the observation alone (their first layer takes D
  inputs, not D + A), so no action can change a reward; the default scores (o, a)."""
  obs = jax.random.normal(jax.random.PRNGKey(1), (4, 5, 11))
  a1 = jax.random.uniform(jax.random.PRNGKey(2), (4, 5, 3), minval=-1, maxval=1)
  a2 = -a1
  for use_action, inputs in ((False, 11), (True, 14)):
    ens = rm.RewardEnsemble(rm.RewardModelConfig(ensemble_size=2, use_action=use_action), 11, 3)
    state = ens.init(jax.random.PRNGKey(0))
    first = jax.tree.leaves(state.params["params"]["Dense_0"])
    assert {leaf.shape[1] for leaf in first if leaf.ndim == 3} == {inputs}
    moved = jnp.abs(ens.member_rewards(state.params, obs, a1)
                    - ens.member_rewards(state.params, obs, a2)).max()
    assert (float(moved) > 1e-4) == use_action
  with pytest.raises(Exception, match="reward.exploration_bonus"):
    rm.RewardModelConfig(exploration_bonus=-0.1)


def test_gated_head_is_a_gate_times_a_term_plus_an_offset_and_learns_a_gated_reward():
  """``head="gated"``: the last layer has three outputs (g, u, c) and r = sigmoid(g) u + c,
  worked by hand from the trunk's features; trained on labels from a reward that counts x0 only
  where x1 > 0 (progress only while healthy), it orders held-out pairs."""
  cfg = rm.RewardModelConfig(ensemble_size=2, hidden=(16,), head="gated")
  ens = rm.RewardEnsemble(cfg, 11, 3)
  state = ens.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (6, 11))
  act = jax.random.normal(jax.random.PRNGKey(2), (6, 3))
  p = jax.tree.map(lambda x: x[0], state.params)["params"]
  h = jax.nn.leaky_relu(jnp.concatenate([obs, act], -1) @ p["Dense_0"]["kernel"]
                        + p["Dense_0"]["bias"], 0.01)
  g, u, c = (h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]).T
  np.testing.assert_allclose(ens.member_rewards(state.params, obs, act)[0],
                             jax.nn.sigmoid(g) * u + c, rtol=1e-5, atol=1e-6)
  with pytest.raises(Exception, match="reward.head"):
    rm.RewardModelConfig(head="bilinear")

  k = jax.random.split(jax.random.PRNGKey(4), 4)
  n, length = 200, 5
  pair_obs = jax.random.normal(k[0], (n, 2, length, 11))
  pair_act = jax.random.normal(k[1], (n, 2, length, 3))
  true = (pair_obs[..., 0] * (pair_obs[..., 1] > 0)).sum(-1)
  label = (true[:, 0] > true[:, 1]).astype(jnp.float32)
  ens = rm.RewardEnsemble(dataclasses.replace(cfg, hidden=(32, 32), steps_per_iteration=300,
                                              validation_fraction=0.25), 11, 3)
  buf = preferences.init_buffer(256, length, 11, 3, 2)
  buf = preferences.add(buf, pair_obs, pair_act, label, jnp.ones(n, bool), true, k[2], 0.25, True)
  _, metrics = jax.jit(lambda s, b, key: rm.train(ens, s, b, key))(
      ens.init(k[3]), buf, jax.random.PRNGKey(9))
  assert float(metrics["reward/val_accuracy"]) > 0.75


def test_tanh_head_is_the_linear_output_squashed_into_minus_one_one():
  """``head="tanh"`` (B-Pref's reward nets): r = tanh(w . h + b), worked by hand from the
  trunk's features; it stays inside [-1, 1] (float32 rounds tanh to 1 far out) where the
  linear output is far outside it."""
  cfg = rm.RewardModelConfig(ensemble_size=2, hidden=(16,), head="tanh")
  ens = rm.RewardEnsemble(cfg, 11, 3)
  state = ens.init(jax.random.PRNGKey(0))
  obs = 50.0 * jax.random.normal(jax.random.PRNGKey(1), (64, 11))
  act = jax.random.normal(jax.random.PRNGKey(2), (64, 3))
  p = jax.tree.map(lambda x: x[1], state.params)["params"]
  h = jax.nn.leaky_relu(jnp.concatenate([obs, act], -1) @ p["Dense_0"]["kernel"]
                        + p["Dense_0"]["bias"], 0.01)
  linear = (h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])[:, 0]
  assert float(jnp.abs(linear).max()) > 1.5
  rewards = ens.member_rewards(state.params, obs, act)
  np.testing.assert_allclose(rewards[1], jnp.tanh(linear), rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(rewards).max()) <= 1.0


def test_optimistic_bonus_adds_the_members_spread_and_decays():
  """PPO's reward with the bonus: the members' mean normalised reward plus beta times their
  standard deviation, beta = beta_0 exp(-t / timescale) - pessimism; beta_0 = 0 leaves the
  plain mean."""
  from rlhp_jax import core
  from rlhp_jax.envs import hopper
  from rlhp_jax.experiment import ExperimentConfig
  from types import SimpleNamespace
  cfg = rm.RewardModelConfig(exploration_bonus=0.5, exploration_bonus_timescale=1000.0)
  np.testing.assert_allclose(rm.exploration_beta(cfg, 0), 0.5)
  np.testing.assert_allclose(rm.exploration_beta(cfg, 1000), 0.5 / np.e, rtol=1e-6)
  assert float(rm.exploration_beta(rm.RewardModelConfig(), 0)) == 0.0
  system = core.RLHP(ExperimentConfig(name="bonus", reward=cfg,
                                      env=hopper.HopperConfig(mode="fixed_horizon")))
  state = system.init(jax.random.PRNGKey(0))
  tr = SimpleNamespace(obs=jax.random.normal(jax.random.PRNGKey(1), (6, 4, hopper.OBS_SIZE)),
                       action=jax.random.normal(jax.random.PRNGKey(2), (6, 4, 3)))
  raw = system.raw_learned_reward(state.reward, tr.obs, tr.action)        # [K, T, B]
  members = (raw - raw.mean((1, 2), keepdims=True)) / raw.std((1, 2), keepdims=True)
  plain, _ = system.learned_reward((state.reward, state.reward_norm, 0.0), tr)
  bonus, (_, norm, beta) = system.learned_reward((state.reward, state.reward_norm, 0.5), tr)
  np.testing.assert_allclose(plain, members.mean(0), atol=1e-4)
  np.testing.assert_allclose(bonus, members.mean(0) + 0.5 * members.std(0), atol=1e-4)
  assert float(norm.batches) == 1 and beta == 0.5
  # pessimism: a constant weight taken off beta, so the spread is charged, not paid
  sceptic = rm.RewardModelConfig(exploration_bonus=0.5, exploration_bonus_timescale=1000.0,
                                 pessimism=0.75)
  np.testing.assert_allclose(rm.exploration_beta(sceptic, 0), -0.25)
  np.testing.assert_allclose(rm.exploration_beta(sceptic, 1e9), -0.75)
  charged, _ = system.learned_reward((state.reward, state.reward_norm,
                                      rm.exploration_beta(sceptic, 1e9)), tr)
  np.testing.assert_allclose(charged, members.mean(0) - 0.75 * members.std(0), atol=1e-4)
  with pytest.raises(Exception, match="reward.pessimism"):
    rm.RewardModelConfig(pessimism=-0.1)


def test_reward_nets_can_score_the_observation_each_step_ends_in():
  """``reward.observation="after"``: the reward PPO is given, the iteration's fragments and
  the nets' input statistics use the observation each step ends in (before any reset), not
  the one the policy acted on."""
  from types import SimpleNamespace
  from rlhp_jax import core
  from rlhp_jax.envs import hopper
  from rlhp_jax.experiment import ExperimentConfig
  from rlhp_jax.ppo import PPOConfig
  with pytest.raises(Exception, match="reward.observation"):
    rm.RewardModelConfig(observation="next")
  cfg = ExperimentConfig(name="after", reward=rm.RewardModelConfig(observation="after"),
                         env=hopper.HopperConfig(mode="fixed_horizon", episode_length=8),
                         ppo=PPOConfig(num_envs=4, unroll_length=6, num_minibatches=2,
                                       num_epochs=1),
                         prefs=preferences.PreferenceConfig(fragment_length=3, total_labels=40,
                                                            pairs_per_iteration=4))
  system = core.RLHP(cfg)
  state = system.init(jax.random.PRNGKey(0))
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  tr = SimpleNamespace(obs=jax.random.normal(keys[0], (6, 4, hopper.OBS_SIZE)),
                       next_obs=jax.random.normal(keys[1], (6, 4, hopper.OBS_SIZE)),
                       action=jax.random.normal(keys[2], (6, 4, 3)))
  given, _ = system.learned_reward((state.reward, state.reward_norm, 0.0), tr)
  raw = system.raw_learned_reward(state.reward, tr.next_obs, tr.action)
  members = (raw - raw.mean((1, 2), keepdims=True)) / raw.std((1, 2), keepdims=True)
  np.testing.assert_allclose(given, members.mean(0), atol=1e-4)
  before = system.raw_learned_reward(state.reward, tr.obs, tr.action)
  assert float(jnp.abs(raw - before).max()) > 1e-3
  # the iteration's segment: each step's obs is the state the next step starts from, unless
  # the step ended an episode (then that state is a reset's)
  _, seg, _, _ = jax.jit(lambda s: system.ppo_phase(
      s.ppo, system.learned_reward, (s.reward, s.reward_norm, 0.0)))(state)
  ended = np.asarray(seg.done[:-1])
  assert ended.any() and not ended.all()
  following = jax.vmap(jax.vmap(hopper.observe))(seg.qpos[1:], seg.qvel[1:])
  np.testing.assert_allclose(np.asarray(seg.obs[:-1])[~ended], np.asarray(following)[~ended],
                             atol=1e-5)
  assert np.abs(np.asarray(seg.obs[1:]) - np.asarray(following)).max() > 1e-2


def test_randomized_priors_are_fixed_unshrunk_added_and_learned_around():
  """``prior_scale``: each member is its trained net plus scale x a fixed random net of the same
  shape (worked by hand); training leaves the prior's weights bit for bit and moves the rest,
  L2 counts only the trained weights, and the members still learn the labels' order. At 0 the
  nets have no prior at all (the recorded runs' parameters and path)."""
  assert rm.PRIOR not in rm.RewardEnsemble(rm.RewardModelConfig(), 11, 3).init(
      jax.random.PRNGKey(0)).params["params"]
  with pytest.raises(Exception, match="reward.prior_scale"):
    rm.RewardModelConfig(prior_scale=-1.0)

  cfg = rm.RewardModelConfig(ensemble_size=2, hidden=(16, 16), prior_scale=2.0,
                             steps_per_iteration=300, validation_fraction=0.25)
  ens = rm.RewardEnsemble(cfg, 11, 3)
  k = jax.random.split(jax.random.PRNGKey(5), 6)
  state = ens.init(k[0])
  obs = jax.random.normal(k[1], (6, 11))
  act = jax.random.normal(k[2], (6, 3))
  x = jnp.concatenate([obs, act], -1)

  def mlp(p, names):
    h = x
    for name in names[:-1]:
      h = jax.nn.leaky_relu(h @ p[name]["kernel"] + p[name]["bias"], 0.01)
    return (h @ p[names[-1]]["kernel"] + p[names[-1]]["bias"])[:, 0]

  for m in range(2):
    p = jax.tree.map(lambda a, m=m: a[m], state.params)["params"]
    by_hand = (mlp(p, ["Dense_0", "Dense_1", "Dense_2"])
               + 2.0 * mlp(p[rm.PRIOR], ["Dense_0", "Dense_1", "Dense_2"]))
    np.testing.assert_allclose(ens.member_rewards(state.params, obs, act)[m], by_hand,
                               rtol=1e-5, atol=1e-5)

  # L2 over the trained weights only: with every pair masked out the loss is the L2 term alone
  one = jax.tree.map(lambda a: a[0], state.params)
  batch = {"obs": jnp.zeros((4, 2, 5, 11)), "action": jnp.zeros((4, 2, 5, 3)),
           "label": jnp.full((4,), 0.5)}
  loss, _ = rm.member_loss(one, 0.3, ens.net, batch, jnp.zeros(4), 0.1)
  trained_sq = sum(float(jnp.sum(w**2)) for name, sub in one["params"].items()
                   if name != rm.PRIOR for w in jax.tree.leaves(sub))
  np.testing.assert_allclose(float(loss), 0.5 * 0.3 * trained_sq, rtol=1e-5)

  n, length = 200, 5
  pair_obs = jax.random.normal(k[3], (n, 2, length, 11))
  pair_act = jax.random.normal(k[4], (n, 2, length, 3))
  true = pair_obs[..., 0].sum(-1)
  label = (true[:, 0] > true[:, 1]).astype(jnp.float32)
  buf = preferences.init_buffer(256, length, 11, 3, 2)
  buf = preferences.add(buf, pair_obs, pair_act, label, jnp.ones(n, bool), true, k[5], 0.25, True)
  after, metrics = jax.jit(lambda s, b, key: rm.train(ens, s, b, key))(state, buf,
                                                                      jax.random.PRNGKey(9))
  for before_leaf, after_leaf in zip(jax.tree.leaves(state.params["params"][rm.PRIOR]),
                                     jax.tree.leaves(after.params["params"][rm.PRIOR])):
    np.testing.assert_array_equal(before_leaf, after_leaf)
  for name in ("Dense_0", "Dense_1", "Dense_2"):   # (the output bias: no gradient, BT has no offset)
    moved = jnp.abs(after.params["params"][name]["kernel"] - state.params["params"][name]["kernel"])
    assert float(moved.max()) > 1e-4
  assert float(metrics["reward/val_accuracy"]) > 0.75


def test_pairs_of_two_lengths_pin_what_a_step_is_worth():
  """``prefs.min_fragment_length``: fragments hold their first 2-6 of 6 steps, the teacher sums
  the steps each holds, and so does the reward model (``counted``). The task is Hopper's in
  miniature: a healthy step (feature 0 = +1) earns v + 1 (v, feature 1, in [0, 1]), a step
  outside the range (-1) earns -1. Pairs of one length only fix differences between steps; two
  lengths also fix each step's worth against nothing, so the learned reward recovers the task's
  levels in units of its speed slope: a healthy step at v = 0 worth 1, an unhealthy one -1."""
  k = jax.random.split(jax.random.PRNGKey(3), 6)
  n, length = 400, 6
  healthy = jax.random.bernoulli(k[0], 0.7, (n, 2, length)) | jax.random.bernoulli(
      k[5], 0.5, (n, 2, 1))
  speed = jax.random.uniform(k[1], (n, 2, length))
  obs = jnp.zeros((n, 2, length, 11)).at[..., 0].set(jnp.where(healthy, 1.0, -1.0))
  obs = obs.at[..., 1].set(speed)
  act = jnp.zeros((n, 2, length, 3))
  held = jax.random.randint(k[2], (n, 2), 2, length + 1)
  counted = (jnp.arange(length) < held[..., None]).astype(jnp.float32)
  true = (jnp.where(healthy, speed + 1.0, -1.0) * counted).sum(-1)
  label = jnp.where(true[:, 0] > true[:, 1], 1.0, jnp.where(true[:, 0] < true[:, 1], 0.0, 0.5))
  cfg = rm.RewardModelConfig(ensemble_size=3, steps_per_iteration=600, validation_fraction=0.2,
                             normalize_inputs=False)
  ens = rm.RewardEnsemble(cfg, 11, 3)
  buf = preferences.init_buffer(512, length, 11, 3, 3)
  buf = preferences.add(buf, obs, act, label, jnp.ones(n, bool), true, k[3], 0.2, True, counted)
  np.testing.assert_array_equal(buf.counted[:n], counted)
  state, metrics = jax.jit(lambda s, b, key: rm.train(ens, s, b, key))(
      ens.init(k[4]), buf, jax.random.PRNGKey(9))
  assert float(metrics["reward/val_accuracy"]) > 0.9
  # a fragment's return sums only the steps it holds
  members = ens.member_rewards(state.params, obs[:4], act[:4])                  # [K, 4, 2, L]
  np.testing.assert_allclose(ens.fragment_returns(state.params, obs[:4], act[:4], counted[:4]),
                             (members * counted[:4]).sum(-1), rtol=1e-5)
  grid = jnp.zeros((3, 11)).at[:, 0].set(jnp.array([1.0, 1.0, -1.0]))
  grid = grid.at[:, 1].set(jnp.array([0.0, 1.0, 0.5]))
  still, fast, outside = np.asarray(ens.member_rewards(state.params, grid,
                                                       jnp.zeros((3, 3))).mean(0))
  slope = fast - still
  assert 0.75 < still / slope < 1.25, (still, fast, outside)
  assert -1.3 < outside / slope < -0.6, (still, fast, outside)
