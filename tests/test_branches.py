"""Branched fragments (``prefs.branch_share``): the policy run on from a recorded state with a
constant offset on its control, and their place in the candidate pairs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlhp_jax import branches, fragments, ppo, preferences
from rlhp_jax.envs import hopper
from rlhp_jax.experiment import ExperimentConfig
from test_fragments_buffer import fake_transitions, sine_members

LENGTH = 4


@pytest.fixture(scope="module")
def branched():
  """Branches of an untrained policy whose samples are its mean (log std -20) from six states
  off the reset distribution: (env, agent, params, qpos, qvel, branches without an offset,
  branches with offset 0.5; the same key)."""
  env = hopper.make(hopper.HopperConfig(mode="fixed_horizon", ctrl_cost=0.0))
  agent = ppo.Agent(ppo.PPOConfig(init_log_std=-20.0), hopper.OBS_SIZE, hopper.ACTION_SIZE)
  params = agent.init(jax.random.PRNGKey(0))
  kq, kv = jax.random.split(jax.random.PRNGKey(1))
  qpos = jnp.asarray(env.mj_model.qpos0) + 0.1 * jax.random.normal(kq, (6, 6))
  qvel = jax.random.normal(kv, (6, 6))

  @jax.jit
  def run(noise):
    return branches.rollout(agent, env, params, jax.random.PRNGKey(2), qpos, qvel,
                            length=LENGTH, noise=noise)

  return env, agent, params, qpos, qvel, run(0.0), run(0.5)


def test_a_branch_starts_at_the_given_state_and_follows_the_physics(branched):
  env, _, _, qpos, qvel, plain, _ = branched
  assert plain.obs.shape == (6, LENGTH, hopper.OBS_SIZE) and plain.action.shape == (6, LENGTH, 3)
  np.testing.assert_array_equal(plain.qpos[:, 0], qpos)
  np.testing.assert_allclose(plain.obs[:, 0], jax.vmap(hopper.observe)(qpos, qvel), atol=1e-6)
  # each recorded step is the env's step from the state before it under the recorded control,
  # with the env's reward (restarted states lose the solver's warm start: close, not equal)
  step = jax.jit(jax.vmap(lambda q, v, a: env.step(env.at(q, v, jax.random.PRNGKey(0)), a)))
  flat = lambda x: x[:, :-1].reshape((-1,) + x.shape[2:])
  nxt = step(flat(plain.qpos), flat(plain.qvel), flat(plain.action))
  np.testing.assert_allclose(nxt.data.qpos, plain.qpos[:, 1:].reshape(-1, 6), atol=2e-3)
  np.testing.assert_allclose(nxt.true_reward, flat(plain.true_reward), atol=2e-2)
  first = lambda x: np.asarray(x).reshape((6, LENGTH - 1) + x.shape[1:])[:, 0]
  np.testing.assert_allclose(first(nxt.data.qpos), plain.qpos[:, 1], atol=1e-6)  # no warm start
  np.testing.assert_allclose(first(nxt.true_reward), plain.true_reward[:, 0], atol=1e-5)
  assert np.ptp(np.asarray(plain.qpos[:, -1, 1])) > 0            # the six states stay distinct


def test_a_branch_offsets_the_policys_control_by_one_constant_per_actuator(branched):
  _, agent, params, _, _, plain, pushed = branched
  policy = lambda frags: jnp.clip(agent.distribution(params, frags.obs)[0], -1.0, 1.0)
  # without an offset the control is the policy's own (its samples are its mean here)
  np.testing.assert_allclose(plain.action, policy(plain), atol=1e-5)
  # with one, the control is clip(policy's control + offset): where the box does not bind, the
  # difference is the same at every step of a branch, and it differs between branches
  diff = np.asarray(pushed.action - policy(pushed))
  inside = np.abs(np.asarray(pushed.action)) < 1.0 - 1e-6
  constant = [np.ptp(diff[i, inside[i, :, a], a]) for i in range(6) for a in range(3)
              if inside[i, :, a].sum() > 1]
  assert len(constant) >= 6 and max(constant) < 1e-5
  offsets = [diff[i, inside[i, :, a], a][0] for i in range(6) for a in range(3)
             if inside[i, :, a].any()]
  assert 0.2 < np.std(offsets) < 1.0
  assert np.all(np.abs(np.asarray(pushed.action)) <= 1.0)
  assert not np.allclose(pushed.qpos[:, -1], plain.qpos[:, -1])   # the offset moved the hopper


def coded_pairs(n=40):
  """[n, 2, L] pairs whose every leaf holds 10 * pair + side (+ 1), so a test can tell where
  each fragment came from."""
  code = (10 * jnp.arange(n)[:, None] + jnp.arange(2)[None, :] + 1).astype(jnp.float32)
  leaf = lambda *s: jnp.broadcast_to(code[:, :, None].reshape(n, 2, 1, *([1] * len(s))),
                                     (n, 2, LENGTH) + s)
  return fragments.FragmentPairs(obs=leaf(11), action=leaf(3), true_reward=leaf(), qpos=leaf(6),
                                 qvel=leaf(6), counted=jnp.ones((n, 2, LENGTH)))


def fake_branch(key, qpos, qvel):
  """A stand-in rollout: a branch's leaves are minus its start's qpos[0] at every step."""
  m = qpos.shape[0]
  start = -qpos[:, 0]
  leaf = lambda *s: jnp.broadcast_to(start.reshape(m, 1, *([1] * len(s))), (m, LENGTH) + s)
  return fragments.FragmentPairs(obs=leaf(11), action=leaf(3), true_reward=leaf(),
                                 qpos=leaf(6), qvel=leaf(6), counted=jnp.ones((m, LENGTH)))


def test_branched_partners_replace_the_last_share_with_a_branch_from_the_first_fragment():
  cand = coded_pairs()
  key = jax.random.PRNGKey(3)
  mixed, used = branches.with_branched_partners(key, cand, share=0.25, rollout_fn=fake_branch)
  used = np.asarray(used)
  np.testing.assert_array_equal(used, np.arange(40) >= 30)
  r = np.asarray(mixed.true_reward[..., 0])                       # [40, 2]
  np.testing.assert_array_equal(r[~used], np.asarray(cand.true_reward[..., 0])[~used])
  # each branched pair holds its own first fragment (10 i + 1) and a branch from that
  # fragment's start (-(10 i + 1)), in either order
  own = 10 * np.arange(30, 40) + 1
  np.testing.assert_array_equal(np.sort(np.abs(r[used]), axis=1), np.stack([own, own], 1))
  assert np.all(r[used].sum(1) == 0)
  assert 0 < (r[used, 0] < 0).sum() < 10                # the branch is not always second
  np.testing.assert_array_equal(np.asarray(mixed.qpos[used][..., 0]).min(-1).min(-1),
                                -own)                  # every leaf moved with the fragment
  same, none = branches.with_branched_partners(key, cand, share=0.0, rollout_fn=fake_branch)
  assert not np.asarray(none).any()
  np.testing.assert_array_equal(same.true_reward, cand.true_reward)


def test_select_ranks_branched_pairs_with_the_rest_and_reports_their_share():
  tr = fake_transitions()
  tr = tr.replace(qpos=jnp.broadcast_to(tr.true_reward[..., None], tr.qpos.shape))
  key = jax.random.PRNGKey(5)
  bf = lambda k, c: branches.with_branched_partners(k, c, share=0.25, rollout_fn=fake_branch)
  plain, _, _, none = fragments.select(key, tr, 40, 4, "random", 1, sine_members)
  withb, _, _, share = fragments.select(key, tr, 40, 4, "random", 1, sine_members,
                                        branch_fn=bf)
  assert float(none["branched"]) == 0.0 and float(share["branched"]) == 0.25
  assert float(share["archived"]) == 0.0
  np.testing.assert_array_equal(np.asarray(withb.true_reward)[:30],
                                np.asarray(plain.true_reward)[:30])
  # entropy selection scores the branched candidates too and reports how many it kept
  _, _, _, kept = fragments.select(key, tr, 8, 4, "entropy", 10, sine_members, branch_fn=bf)
  assert 0.0 <= float(kept["branched"]) <= 1.0


def test_branch_settings_are_checked():
  with pytest.raises(Exception, match="prefs.branch_share"):
    preferences.PreferenceConfig(branch_share=1.5)
  with pytest.raises(Exception, match="prefs.branch_noise"):
    preferences.PreferenceConfig(branch_noise=0.0)
  with pytest.raises(Exception, match="prefs.branch_share"):
    preferences.PreferenceConfig(archive_size=64, archive_share=0.6, branch_share=0.5)
  preferences.PreferenceConfig(archive_size=64, archive_share=0.5, branch_share=0.5)
  cfg = ExperimentConfig()
  gym = dataclasses.replace(cfg.env, mode="gym")
  with pytest.raises(Exception, match="prefs.branch_share"):
    dataclasses.replace(cfg, env=gym, prefs=dataclasses.replace(cfg.prefs, branch_share=0.5))
  dataclasses.replace(cfg, env=gym)


def test_branches_can_record_the_observation_each_step_ends_in(branched):
  """``scored_after`` (``reward.observation="after"``): the same branches, each step's obs the
  one it ends in, so that a branch is scored as the run's own fragments are."""
  env, agent, params, qpos, qvel, plain, _ = branched
  after = jax.jit(lambda: branches.rollout(agent, env, params, jax.random.PRNGKey(2), qpos, qvel,
                                           length=LENGTH, noise=0.0, scored_after=True))()
  np.testing.assert_array_equal(after.action, plain.action)
  np.testing.assert_array_equal(after.qpos, plain.qpos)
  np.testing.assert_allclose(after.obs[:, :-1], plain.obs[:, 1:], atol=1e-6)
  assert np.abs(np.asarray(after.obs[:, 0] - plain.obs[:, 0])).max() > 1e-3
