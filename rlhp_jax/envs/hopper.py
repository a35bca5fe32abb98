"""MuJoCo Hopper on MJX: pure ``reset(key)`` / ``step(state, action)``, unbatched.

Two modes (``HopperConfig.mode``):

* ``"gym"``: the standard Hopper. 11-value observation ``[qpos[1:], clip(qvel, -10, 10)]``,
  reward = forward velocity + healthy bonus - control cost, termination when unhealthy, 1000-step
  time limit. Returns are comparable with published Hopper numbers.
* ``"fixed_horizon"`` (as seals does): never terminates, every episode lasts exactly
  ``episode_length`` steps, so nothing leaks through episode length. The healthy bonus is paid only
  while healthy; hop forward charges ``unhealthy_penalty`` for each step outside the healthy range
  instead of terminating, with no control cost (Christiano et al. 2017, appendix A). Episodes
  start staggered (``stagger``): a batch of envs holds every phase of an episode at once.
  Preference learning uses this mode; only in it can the hopper flip.

Every state keeps ``qpos``/``qvel`` (inside ``data``) so clips can be drawn later without
re-simulating, and the task oracle's score in ``true_reward``, which learners never read. Vmap
``reset``/``step`` over a batch of envs at the call site; ``auto_reset`` restarts finished
episodes in place so a ``lax.scan`` rollout never changes shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from typing import Literal

import jax
import jax.numpy as jnp
import mujoco
from flax import struct
# mjx prints "Failed to import warp" (a GPU backend we do not use) to stdout; send it to stderr
# so that stdout stays clean for the JSON the benchmarks print.
with contextlib.redirect_stdout(sys.stderr):
  from mujoco import mjx

from rlhp_jax import config_errors as v
from rlhp_jax.envs import tasks

ASSET = os.path.join(os.path.dirname(__file__), "assets", "hopper.xml")
OBS_SIZE = 11
ACTION_SIZE = 3


@dataclasses.dataclass(frozen=True)
class HopperConfig:
  """Hopper env settings."""

  mode: Literal["gym", "fixed_horizon"] = "gym"
  """"gym": terminate when unhealthy; "fixed_horizon": never terminate (preference learning)."""
  task: Literal["hop_forward", "backflip"] = "hop_forward"
  """Task oracle reported as ``true_reward`` (see ``rlhp_jax.envs.tasks``)."""
  episode_length: int = 1000
  """Env steps per episode (time limit in gym mode, exact length in fixed-horizon mode)."""
  frame_skip: int = 4
  """Physics steps (0.002 s each) per env step; Gym uses 4, so dt = 0.008 s."""
  solver_iterations: int = 1
  """Constraint solver (Newton) iterations per physics step. MuJoCo's default is 100."""
  ls_iterations: int = 4
  """Line-search iterations per solver iteration. MuJoCo's default is 50."""
  euler_damping: bool = True
  """Implicit joint damping in the Euler integrator (MuJoCo's default); off is faster."""
  reset_noise_scale: float = 5e-3
  """Uniform noise added to the initial qpos and qvel, as in Gym."""
  train_reset_noise_scale: float | None = None
  """The same noise for training episodes' starts only (PPO's rollouts, hence the candidate
  fragments); evaluation always starts from ``reset_noise_scale``. None: ``reset_noise_scale``.
  A wider start distribution trains the first steps from more varied states."""
  healthy_z_min: float = 0.7
  """Gym's healthy range for torso height: z > 0.7."""
  healthy_angle_max: float = 0.2
  """Gym's healthy range for torso pitch: |angle| < 0.2 rad."""
  healthy_state_max: float = 100.0
  """Gym's healthy range for qpos[2:] and qvel: |value| < 100."""
  ctrl_cost: float = 1e-3
  """Hop forward's control cost per unit of |a|^2 (Gym's 1e-3; the paper's fixed-horizon task
  has none: set 0)."""
  unhealthy_penalty: float = 0.0
  """Hop forward, fixed-horizon mode: reward subtracted for every step outside the healthy range
  (the paper's replacement for termination). Ignored in gym mode, which terminates instead."""
  forward_while_unhealthy: bool = False
  """Hop forward, fixed-horizon mode: also pay forward progress outside the healthy range (by
  default a step outside it earns nothing, as a terminated Gym episode would)."""

  def __post_init__(self):
    v.one_of(self.mode, ("gym", "fixed_horizon"), "env.mode")
    v.one_of(self.task, tuple(tasks.ORACLES), "env.task")
    v.positive_int(self.episode_length, "env.episode_length")
    v.positive_int(self.frame_skip, "env.frame_skip")
    v.positive_int(self.solver_iterations, "env.solver_iterations")
    v.positive_int(self.ls_iterations, "env.ls_iterations")
    v.non_negative(self.reset_noise_scale, "env.reset_noise_scale")
    if self.train_reset_noise_scale is not None:
      v.non_negative(self.train_reset_noise_scale, "env.train_reset_noise_scale")
    v.positive(self.healthy_z_min, "env.healthy_z_min")
    v.positive(self.healthy_angle_max, "env.healthy_angle_max")
    v.positive(self.healthy_state_max, "env.healthy_state_max")
    v.non_negative(self.ctrl_cost, "env.ctrl_cost")
    v.non_negative(self.unhealthy_penalty, "env.unhealthy_penalty")

  @property
  def dt(self) -> float:
    return 0.002 * self.frame_skip


@struct.dataclass
class EnvState:
  """One env's state; every leaf gains a leading batch axis under vmap."""

  data: mjx.Data
  obs: jax.Array            # [11]
  true_reward: jax.Array    # [] task oracle score of the last step; never read by learners
  terminated: jax.Array     # [] bool, unhealthy (gym mode only)
  truncated: jax.Array      # [] bool, time limit reached
  t: jax.Array              # [] int32, steps taken in this episode
  episode_return: jax.Array  # [] running sum of true_reward over this episode
  key: jax.Array

  @property
  def done(self) -> jax.Array:
    return self.terminated | self.truncated


def load_model(cfg: HopperConfig) -> mujoco.MjModel:
  """The C MuJoCo model with the config's solver settings (also used by the renderer)."""
  model = mujoco.MjModel.from_xml_path(ASSET)
  model.opt.iterations = cfg.solver_iterations
  model.opt.ls_iterations = cfg.ls_iterations
  if not cfg.euler_damping:
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_EULERDAMP
  return model


def wrapped_pitch(qpos: jax.Array) -> jax.Array:
  """The torso pitch qpos[2] wrapped to [-pi, pi): what the observation shows and the health
  check tests (qpos keeps it unwrapped, for counting flips)."""
  pitch = qpos[..., 2]
  return jnp.where(jnp.abs(pitch) > jnp.pi, jnp.mod(pitch + jnp.pi, 2 * jnp.pi) - jnp.pi, pitch)


def observe(qpos: jax.Array, qvel: jax.Array) -> jax.Array:
  """Gym's Hopper observation: [qpos[1:] (5), clip(qvel, -10, 10) (6)], with the torso pitch
  wrapped to [-pi, pi). Gym-style episodes end at |pitch| > 0.2 rad, where wrapping changes
  nothing; in fixed-horizon episodes a flipping hopper's unwrapped pitch grows by 2*pi a turn,
  an input the policy and the reward model would never have seen before."""
  return jnp.concatenate([qpos[1:2], wrapped_pitch(qpos)[None], qpos[3:],
                          jnp.clip(qvel, -10.0, 10.0)])


def is_healthy(qpos: jax.Array, qvel: jax.Array, cfg: HopperConfig) -> jax.Array:
  """Gym's health check on the torso height, pitch and the rest of the state. The pitch is the
  observed (wrapped) one, so a hopper upright after a whole turn is healthy, as it looks; the
  state bound applies to the wrapped pitch too. Identical to Gym's check for |pitch| < pi."""
  state = jnp.concatenate([qpos[3:], qvel])
  pitch = wrapped_pitch(qpos)
  return ((qpos[1] > cfg.healthy_z_min)
          & (jnp.abs(pitch) < cfg.healthy_angle_max)
          & jnp.all(jnp.abs(state) < cfg.healthy_state_max))


def applied_action(action: jax.Array) -> jax.Array:
  """The control the physics receives: the policy's sample clipped to the actuators' [-1, 1].
  The reward model and the teachers see this, never the raw Gaussian sample."""
  return jnp.clip(action, -1.0, 1.0)


class Hopper:
  """Holds the static MJX model; ``reset`` and ``step`` are pure and unbatched."""

  obs_size = OBS_SIZE
  action_size = ACTION_SIZE

  def __init__(self, cfg: HopperConfig = HopperConfig()):
    self.cfg = cfg
    self.mj_model = load_model(cfg)
    self.mjx_model = mjx.put_model(self.mj_model)
    self._oracle = functools.partial(
        tasks.ORACLES[cfg.task], bonus_always=cfg.mode == "gym", ctrl_cost=cfg.ctrl_cost,
        unhealthy_penalty=0.0 if cfg.mode == "gym" else cfg.unhealthy_penalty,
        forward_while_unhealthy=cfg.forward_while_unhealthy)

  def _initial_qpos_qvel(self, key, s: float):
    kq, kv = jax.random.split(key)
    qpos = jnp.asarray(self.mj_model.qpos0) + jax.random.uniform(kq, (6,), minval=-s, maxval=s)
    qvel = jax.random.uniform(kv, (6,), minval=-s, maxval=s)
    return qpos, qvel

  def _start(self, key: jax.Array, noise_scale: float) -> EnvState:
    key, init_key = jax.random.split(key)
    qpos, qvel = self._initial_qpos_qvel(init_key, noise_scale)
    return self.at(qpos, qvel, key)

  def reset(self, key: jax.Array) -> EnvState:
    """A fresh episode from Gym's start distribution (``reset_noise_scale``): evaluation's."""
    return self._start(key, self.cfg.reset_noise_scale)

  def train_reset(self, key: jax.Array) -> EnvState:
    """A fresh training episode: ``reset`` with ``train_reset_noise_scale`` when set."""
    s = self.cfg.train_reset_noise_scale
    return self._start(key, self.cfg.reset_noise_scale if s is None else s)

  def at(self, qpos: jax.Array, qvel: jax.Array, key: jax.Array) -> EnvState:
    """A fresh episode (clock at 0) from the physical state (qpos [6], qvel [6]): a reset's
    state, or one a rollout recorded, to branch from (the solver's warm start is not kept)."""
    data = mjx.make_data(self.mjx_model).replace(qpos=qpos, qvel=qvel)
    zero = jnp.zeros(())
    return EnvState(data=data, obs=observe(qpos, qvel), true_reward=zero,
                    terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool),
                    t=jnp.zeros((), jnp.int32), episode_return=zero, key=key)

  def step(self, state: EnvState, action: jax.Array) -> EnvState:
    """Advances ``frame_skip`` physics steps. Does not reset; see ``auto_reset``."""
    cfg = self.cfg
    action = applied_action(action)
    data = state.data.replace(ctrl=action)
    data = jax.lax.fori_loop(0, cfg.frame_skip, lambda _, d: mjx.step(self.mjx_model, d), data)
    healthy = is_healthy(data.qpos, data.qvel, cfg)
    gym = cfg.mode == "gym"
    true_reward = self._oracle(state.data.qpos, state.data.qvel, action, data.qpos, data.qvel,
                               cfg.dt, healthy.astype(jnp.float32))
    t = state.t + 1
    return state.replace(
        data=data, obs=observe(data.qpos, data.qvel), true_reward=true_reward,
        terminated=jnp.logical_not(healthy) if gym else jnp.zeros((), bool),
        truncated=t >= cfg.episode_length, t=t,
        episode_return=state.episode_return + true_reward)

  def stagger(self, state: EnvState, key: jax.Array) -> EnvState:
    """Fixed-horizon mode: starts a fresh env's clock at a random step in [0, episode_length),
    so its first episode is shorter and a batch of envs never resets in lock step: every
    rollout, PPO batch and candidate pool holds every phase of an episode, and the episode's
    length says nothing about behaviour. Gym-style episodes are returned unchanged."""
    if self.cfg.mode != "fixed_horizon":
      return state
    return state.replace(t=jax.random.randint(key, (), 0, self.cfg.episode_length))

  def auto_reset(self, state: EnvState) -> EnvState:
    """Restarts the episode in place if it is done; otherwise returns ``state`` unchanged."""
    key, reset_key = jax.random.split(state.key)
    fresh = self.train_reset(reset_key)
    done = state.done
    pick = lambda new, old: jnp.where(done, new, old)
    data = state.data.replace(qpos=pick(fresh.data.qpos, state.data.qpos),
                              qvel=pick(fresh.data.qvel, state.data.qvel),
                              qacc_warmstart=pick(fresh.data.qacc_warmstart,
                                                  state.data.qacc_warmstart),
                              time=pick(fresh.data.time, state.data.time))
    return state.replace(
        data=data, obs=pick(fresh.obs, state.obs), terminated=pick(False, state.terminated),
        truncated=pick(False, state.truncated), t=pick(0, state.t),
        episode_return=pick(0.0, state.episode_return), key=key)


@functools.lru_cache(maxsize=None)
def make(cfg: HopperConfig) -> Hopper:
  """One ``Hopper`` per config, shared so jitted functions over it are reused."""
  return Hopper(cfg)
