"""MJX Hopper: shapes, NaN-free long rollouts, the gym-style step against a hand computation on
the C engine, fixed-horizon episodes. Compiled functions are shared per module."""

import functools
import os

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from rlhp_jax import experiment
from rlhp_jax.envs import hopper, tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

B = 8


@pytest.fixture(scope="module")
def gym_env():
  return hopper.make(hopper.HopperConfig(mode="gym", episode_length=1000))


@pytest.fixture(scope="module")
def fixed_env():
  return hopper.make(hopper.HopperConfig(mode="fixed_horizon", episode_length=100))


def random_rollout(env, steps):
  """jit(scan(vmap(step + auto_reset))) under uniform random actions; returns per-step arrays."""
  @jax.jit
  def run(key):
    states = jax.vmap(env.reset)(jax.random.split(key, B))

    def body(state, k):
      action = jax.random.uniform(k, (B, 3), minval=-1.0, maxval=1.0)
      nxt = jax.vmap(env.step)(state, action)
      out = (nxt.obs, nxt.data.qpos, nxt.data.qvel, nxt.true_reward, nxt.terminated,
             nxt.truncated, nxt.t)
      return jax.vmap(env.auto_reset)(nxt), out

    return jax.lax.scan(body, states, jax.random.split(key, steps))[1]
  return run


@pytest.fixture(scope="module")
def fixed_rollout(fixed_env):
  return jax.device_get(random_rollout(fixed_env, 2000)(jax.random.PRNGKey(0)))


def test_shapes(gym_env):
  state = gym_env.reset(jax.random.PRNGKey(0))
  assert state.obs.shape == (hopper.OBS_SIZE,)
  assert state.data.qpos.shape == (6,) and state.data.qvel.shape == (6,)
  np.testing.assert_allclose(state.data.qpos[1], 1.25, atol=6e-3)  # z height, Gym convention
  batched = jax.vmap(gym_env.reset)(jax.random.split(jax.random.PRNGKey(1), B))
  nxt = jax.jit(jax.vmap(gym_env.step))(batched, jnp.zeros((B, 3)))
  assert nxt.obs.shape == (B, 11) and nxt.true_reward.shape == (B,)
  assert nxt.terminated.dtype == jnp.bool_
  # observation layout: qpos[1:], clipped qvel
  np.testing.assert_allclose(nxt.obs[:, :5], nxt.data.qpos[:, 1:], rtol=1e-6)


def test_observation_wraps_the_pitch_of_a_flipping_hopper():
  qpos = jnp.array([0.3, 1.1, -2 * np.pi - 0.25, -0.5, -0.4, 0.2])
  qvel = jnp.array([1.0, -20.0, 3.0, 0.0, 0.0, 0.0])
  obs = hopper.observe(qpos, qvel)
  np.testing.assert_allclose(obs, [1.1, -0.25, -0.5, -0.4, 0.2, 1.0, -10.0, 3.0, 0, 0, 0],
                             atol=1e-5)
  assert float(hopper.observe(qpos.at[2].set(0.1), qvel)[1]) == pytest.approx(0.1)  # Gym's value


def test_long_random_rollout_has_no_nans(fixed_rollout):
  obs, qpos, qvel, reward, *_ = fixed_rollout
  for name, x in [("obs", obs), ("qpos", qpos), ("qvel", qvel), ("reward", reward)]:
    assert np.isfinite(x).all(), name
  assert np.abs(qvel).max() < 1e3  # no blow-up


def test_fixed_horizon_never_terminates(fixed_rollout):
  _, _, _, _, terminated, truncated, t = fixed_rollout
  assert not terminated.any()
  # 2000 steps at episode_length 100: exactly 20 episodes per env, each exactly 100 steps long
  assert truncated.sum(0).tolist() == [20] * B
  assert (t[truncated] == 100).all()
  assert truncated[99::100].all()


def test_gym_step_matches_hand_computation_on_c_engine(gym_env):
  """One env step from a perturbed state: MJX vs mj_step x4 on the same model, and the reward
  computed by hand from Gym's formula."""
  cfg = gym_env.cfg
  qpos = np.array([0.1, 1.2, 0.05, -0.3, -0.2, 0.1])
  qvel = np.array([0.5, -0.2, 0.3, 1.0, -1.0, 0.5])
  action = np.array([0.5, -0.8, 0.3])
  state = gym_env.reset(jax.random.PRNGKey(0))
  state = state.replace(data=state.data.replace(qpos=jnp.asarray(qpos, jnp.float32),
                                                qvel=jnp.asarray(qvel, jnp.float32)))
  nxt = jax.jit(gym_env.step)(state, jnp.asarray(action, jnp.float32))

  m = hopper.load_model(cfg)
  d = mujoco.MjData(m)
  d.qpos[:], d.qvel[:], d.ctrl[:] = qpos, qvel, action
  for _ in range(cfg.frame_skip):
    mujoco.mj_step(m, d)
  np.testing.assert_allclose(nxt.data.qpos, d.qpos, atol=2e-3)
  expected = (d.qpos[0] - qpos[0]) / 0.008 + 1.0 - 1e-3 * np.sum(action**2)
  np.testing.assert_allclose(nxt.true_reward, expected, rtol=2e-2, atol=2e-2)
  # and exactly Gym's formula on MJX's own positions
  own = (float(nxt.data.qpos[0]) - qpos[0]) / 0.008 + 1.0 - 1e-3 * np.sum(action**2)
  np.testing.assert_allclose(nxt.true_reward, own, rtol=1e-4, atol=1e-4)
  assert not bool(nxt.terminated)


@pytest.mark.parametrize("index,value", [(1, 0.6), (2, 0.3), (2, -0.3), (3, 150.0)])
def test_gym_terminates_when_unhealthy(gym_env, index, value):
  """Gym's healthy ranges: z > 0.7, |angle| < 0.2, |qpos[2:], qvel| < 100."""
  qpos = np.array(gym_env.mj_model.qpos0, np.float32)
  qpos[index] = value
  assert not bool(hopper.is_healthy(jnp.asarray(qpos), jnp.zeros(6), gym_env.cfg))
  assert bool(hopper.is_healthy(jnp.asarray(gym_env.mj_model.qpos0, jnp.float32), jnp.zeros(6),
                                gym_env.cfg))


def test_gym_episode_terminates_and_auto_resets(gym_env):
  """Zero torque: the hopper tips over, the episode terminates and auto_reset restarts it."""
  state = gym_env.reset(jax.random.PRNGKey(3))
  state = state.replace(data=state.data.replace(qpos=state.data.qpos.at[2].set(0.19)))
  step = jax.jit(gym_env.step)
  for _ in range(200):
    state = step(state, jnp.zeros(3))
    if bool(state.terminated):
      break
  assert bool(state.terminated), "a tilted passive hopper must fall"
  ret = float(state.episode_return)
  assert ret == pytest.approx(float(state.t), abs=5.0 * float(state.t))  # ~1 healthy/step
  fresh = jax.jit(gym_env.auto_reset)(state)
  assert int(fresh.t) == 0 and not bool(fresh.done) and float(fresh.episode_return) == 0.0
  np.testing.assert_allclose(fresh.data.qpos[1], 1.25, atol=6e-3)


def test_backflip_oracle_and_flip_count():
  pitch = -jnp.linspace(0, 2 * np.pi * 2.5, 100)  # two and a half backward turns
  assert float(tasks.flips_completed(pitch)) == 2.0
  assert float(tasks.flips_completed(-pitch)) == 0.0  # forward turns are not backflips
  # the two turns end upright at pitch -2pi (index 40) and -4pi (index 80): landed only if the
  # torso is high there
  high, low = jnp.full(100, 1.2), jnp.full(100, 0.3)
  assert float(tasks.flips_landed(pitch, high)) == 2.0
  assert float(tasks.flips_landed(pitch, low)) == 0.0
  assert float(tasks.flips_landed(pitch, low.at[40].set(1.0))) == 1.0
  # turning back and forth over the same boundary counts once
  wobble = jnp.concatenate([pitch[:45], pitch[44:30:-1], pitch[31:45]])
  assert float(tasks.flips_landed(wobble, jnp.full(wobble.shape, 1.2))) == 1.0

  up = jnp.array([0.0, 1.205, 0.0, 0, 0, 0])    # standing: the foot touches the floor
  air = up.at[1].set(1.705)                       # 0.5 m up: the whole body clears the floor
  np.testing.assert_allclose(tasks.ground_clearance(up), -0.005, atol=1e-6)
  com_up = float(tasks.center_of_mass_height(up))
  np.testing.assert_allclose(com_up, 0.596 - 0.045, atol=1e-3)
  spin = lambda rate, q: tasks.backflip(up, jnp.zeros(6), jnp.zeros(3), q,
                                        jnp.zeros(6).at[2].set(rate), 0.008, 1.0)
  # in the air, centre of mass 0.5 m above standing: 4 rad/s backwards + 10 * height + up bonus
  height = com_up + 0.5 - 0.596
  np.testing.assert_allclose(spin(-4.0, air), 4.0 + 10 * height + 1.0, rtol=1e-5)
  np.testing.assert_allclose(spin(4.0, air), -4.0 + 10 * height + 1.0, rtol=1e-5)
  # on the ground, rotation earns nothing: only the up bonus is left
  np.testing.assert_allclose(spin(-4.0, up), 1.0, rtol=1e-5)
  lying = jnp.array([0.0, 0.05, -np.pi / 2, 0, 0, 0])
  np.testing.assert_allclose(spin(-4.0, lying), 0.0, atol=1e-6)
  # no control cost: lying still scores exactly 0 whatever the torques (a tie for the teacher)
  assert float(tasks.backflip(lying, jnp.zeros(6), jnp.ones(3), lying, jnp.zeros(6), 0.008,
                              1.0)) == 0.0
  # kicked off the floor while lying (clear of it, centre of mass low): still nothing
  kicked = lying.at[1].set(0.35)
  assert float(tasks.ground_clearance(kicked)) > 0.05
  assert float(tasks.center_of_mass_height(kicked)) < 0.5
  np.testing.assert_allclose(spin(-4.0, kicked), 0.0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_ground_clearance_matches_the_simulator(gym_env, seed):
  """The planar kinematics behind the backflip's gates, against MuJoCo's own geom positions
  (lowest capsule end minus radius) and centre of mass, over random poses (pitch any angle)."""
  rng = np.random.default_rng(seed)
  m = gym_env.mj_model
  d = mujoco.MjData(m)
  d.qpos[:] = [rng.uniform(-1, 1), rng.uniform(0.2, 2.0), rng.uniform(-7, 7),
               rng.uniform(-2.6, 0), rng.uniform(-2.6, 0), rng.uniform(-0.78, 0.78)]
  mujoco.mj_kinematics(m, d)
  mujoco.mj_comPos(m, d)
  lowest = np.inf
  for g in range(m.ngeom):
    if m.geom_type[g] != mujoco.mjtGeom.mjGEOM_CAPSULE:
      continue
    axis = d.geom_xmat[g].reshape(3, 3)[:, 2] * m.geom_size[g, 1]
    ends_z = [d.geom_xpos[g, 2] + axis[2], d.geom_xpos[g, 2] - axis[2]]
    lowest = min(lowest, min(ends_z) - m.geom_size[g, 0])
  q = jnp.asarray(d.qpos, jnp.float32)
  np.testing.assert_allclose(tasks.ground_clearance(q), lowest, atol=1e-5)
  np.testing.assert_allclose(tasks.center_of_mass_height(q), d.subtree_com[1, 2], atol=1e-5)


def test_hop_forward_oracle_hand_numbers():
  q = jnp.zeros(6)
  r = tasks.hop_forward(q, jnp.zeros(6), jnp.array([1.0, 0.0, -1.0]), q.at[0].set(0.016),
                        jnp.zeros(6), 0.008, 1.0)
  np.testing.assert_allclose(r, 2.0 + 1.0 - 2e-3, rtol=1e-6)
  r0 = tasks.hop_forward(q, jnp.zeros(6), jnp.zeros(3), q, jnp.zeros(6), 0.008, 0.0)
  assert float(r0) == 0.0
  r1 = tasks.hop_forward(q, jnp.zeros(6), jnp.zeros(3), q, jnp.zeros(6), 0.008, 1.0)
  assert float(r1) == 1.0
  # the paper's fixed-horizon task: no control cost, a penalty instead of termination
  kw = dict(ctrl_cost=0.0, unhealthy_penalty=10.0)
  a = jnp.array([1.0, 0.0, -1.0])
  healthy = tasks.hop_forward(q, q, a, q.at[0].set(0.016), q, 0.008, 1.0, **kw)
  fallen = tasks.hop_forward(q, q, a, q.at[0].set(0.016), q, 0.008, 0.0, **kw)
  np.testing.assert_allclose([healthy, fallen], [3.0, -10.0], rtol=1e-6)
  # Gym pays the bonus on the terminating step too
  gym = tasks.hop_forward(q, q, a, q.at[0].set(0.016), q, 0.008, 0.0, bonus_always=True)
  np.testing.assert_allclose(gym, 3.0 - 2e-3, rtol=1e-6)


@pytest.mark.parametrize("name, price", [
    ("hopper_synthetic.py", lambda v: v + 2.0),          # forward pay forfeited, +1 bonus, -1
    ("hopper_seals_reward_baseline.py", lambda v: 1.0),  # seals': forward paid, +1 bonus
    ("hopper_health_priced_baseline.py", lambda v: 3.6),  # forward paid, +1 bonus, -2.6
])
def test_what_a_healthy_step_is_worth_in_each_hop_forward_experiment(name, price):
  """The main job's task and the two diagnostic arms (session 38) differ in what a step inside
  the healthy range earns over one outside it at the same forward speed v: v + 2, 1 and 3.6."""
  cfg = experiment.load_experiment(os.path.join(ROOT, "experiments", name))
  oracle = hopper.make(cfg.env)._oracle
  q, a = jnp.zeros(6), jnp.array([0.5, -0.5, 0.2])
  for v in (0.0, 1.0, 2.5):
    moved = q.at[0].set(v * cfg.env.dt)
    healthy, unhealthy = (float(oracle(q, q, a, moved, q, cfg.env.dt, h)) for h in (1.0, 0.0))
    np.testing.assert_allclose(healthy - unhealthy, price(v), rtol=1e-5, atol=1e-5)


def test_fixed_horizon_env_charges_the_penalty_outside_the_healthy_range():
  env = hopper.make(hopper.HopperConfig(mode="fixed_horizon", ctrl_cost=0.0,
                                        unhealthy_penalty=10.0))
  state = env.reset(jax.random.PRNGKey(0))
  lying = state.replace(data=state.data.replace(qpos=state.data.qpos.at[1].set(0.3)))
  nxt = jax.jit(env.step)(lying, jnp.ones(3))
  np.testing.assert_allclose(float(nxt.true_reward), -10.0, atol=1e-5)
  assert not bool(nxt.terminated)


def test_health_check_and_observation_agree_on_the_pitch():
  """After a whole backward turn the torso is upright again: the observation shows pitch ~0.05
  and the health check agrees (Gym's raw check would call it fallen at -2 pi + 0.05)."""
  cfg = hopper.HopperConfig(mode="fixed_horizon")
  qpos = jnp.array([0.0, 1.25, 0.05 - 2 * np.pi, 0.0, 0.0, 0.0])
  obs = hopper.observe(qpos, jnp.zeros(6))
  np.testing.assert_allclose(obs[1], 0.05, atol=1e-5)
  assert bool(hopper.is_healthy(qpos, jnp.zeros(6), cfg))
  tilted = qpos.at[2].set(0.3 - 2 * np.pi)
  np.testing.assert_allclose(hopper.observe(tilted, jnp.zeros(6))[1], 0.3, atol=1e-5)
  assert not bool(hopper.is_healthy(tilted, jnp.zeros(6), cfg))


def test_fixed_horizon_episodes_start_staggered():
  """A fresh batch of fixed-horizon envs does not reset in lock step: their clocks start spread
  over the episode, so the first resets are spread over time too. Gym-style envs start at 0."""
  from rlhp_jax import ppo
  cfg = ppo.PPOConfig(num_envs=64, unroll_length=8, num_minibatches=1)
  agent = ppo.Agent(cfg, hopper.OBS_SIZE, hopper.ACTION_SIZE)
  fixed = hopper.make(hopper.HopperConfig(mode="fixed_horizon", episode_length=100))
  t = np.asarray(ppo.init_state(agent, fixed, jax.random.PRNGKey(0)).env_state.t)
  assert t.min() >= 0 and t.max() < 100 and len(np.unique(t)) > 30
  gym = hopper.make(hopper.HopperConfig(mode="gym"))
  assert (np.asarray(ppo.init_state(agent, gym, jax.random.PRNGKey(0)).env_state.t) == 0).all()


def test_training_starts_can_be_wider_than_evaluation_starts():
  """``train_reset_noise_scale`` widens only training episodes' starts (PPO's first states and
  every ``auto_reset``); ``reset``, which evaluation uses, keeps Gym's 0.005."""
  from rlhp_jax import config_errors, ppo
  env = hopper.make(hopper.HopperConfig(mode="fixed_horizon", episode_length=100,
                                        train_reset_noise_scale=0.1))
  qpos0 = np.asarray(env.mj_model.qpos0)
  keys = jax.random.split(jax.random.PRNGKey(0), 64)
  spread = lambda states: np.abs(np.asarray(states.data.qpos) - qpos0).max()
  assert spread(jax.vmap(env.reset)(keys)) <= 0.005
  assert 0.05 < spread(jax.vmap(env.train_reset)(keys)) <= 0.1
  cfg = ppo.PPOConfig(num_envs=64, unroll_length=8, num_minibatches=1)
  agent = ppo.Agent(cfg, hopper.OBS_SIZE, hopper.ACTION_SIZE)
  assert 0.05 < spread(ppo.init_state(agent, env, jax.random.PRNGKey(0)).env_state) <= 0.1
  finished = jax.vmap(env.reset)(keys).replace(truncated=jnp.ones(64, bool))
  assert 0.05 < spread(jax.vmap(env.auto_reset)(finished)) <= 0.1
  # unset, training starts are evaluation's, draw for draw
  plain = hopper.make(hopper.HopperConfig(mode="fixed_horizon", episode_length=100))
  np.testing.assert_array_equal(jax.vmap(plain.train_reset)(keys).data.qpos,
                                jax.vmap(plain.reset)(keys).data.qpos)
  with pytest.raises(config_errors.ConfigError, match="env.train_reset_noise_scale"):
    hopper.HopperConfig(train_reset_noise_scale=-0.1)
