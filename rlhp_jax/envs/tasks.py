"""Task oracles: functions of the physical state that score behaviour.

An oracle scores one env step from the Hopper's generalised coordinates before and after it:

    reward = oracle(qpos, qvel, action, next_qpos, next_qvel, dt, healthy)

with ``qpos = [x, z, pitch, thigh, leg, foot]`` (``z`` is the torso height, ``pitch`` the
unwrapped torso angle about +y, positive when the torso leans forward), ``qvel`` its time
derivative, ``action`` in [-1, 1]^3 and ``dt`` the env step length. Oracles are unbatched and
pure; vmap them at the call site. They are what the env reports as ``true_reward``, what
synthetic teachers judge by and what evaluation reports. The learner never reads them.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Oracle = Callable[..., jnp.ndarray]

# Hop forward: the Gym Hopper reward, and the paper's fixed-horizon variant of it.
FORWARD_WEIGHT = 1.0
HEALTHY_BONUS = 1.0
CTRL_COST = 1e-3
"""Gym's (and seals') control cost per unit of |a|^2."""


def hop_forward(qpos, qvel, action, next_qpos, next_qvel, dt, healthy, *, bonus_always=False,
                ctrl_cost=CTRL_COST, unhealthy_penalty=0.0, forward_while_unhealthy=False):
  """Hop forward.

  gym-style (``bonus_always``):  r = (x' - x) / dt + 1 - ctrl_cost * |a|^2
  fixed-horizon:                 r = 1[healthy'] * ((x' - x) / dt + 1)
                                     - unhealthy_penalty * 1[not healthy'] - ctrl_cost * |a|^2
  (with ``forward_while_unhealthy`` the forward term counts on every step:
                                 r = (x' - x) / dt + 1[healthy'] - unhealthy_penalty * 1[not healthy'] ...)

  ``healthy`` is 1.0 while the state after the step is in Gym's healthy range. Gym-style mode
  ends the episode at the first unhealthy step (and pays that step in full, as Gym does). The
  fixed-horizon task replaces that termination by a penalty, as Christiano et al. (2017,
  appendix A) set Hopper up: a step outside the healthy range earns nothing (as a terminated
  episode would) and costs ``unhealthy_penalty``; the paper's task has no control cost (A.1).
  Without the first part a fallen hopper that crawls along the floor at 2 m/s out-earns one that
  stands, and a policy learns to fall forward and crawl (measured: seals-style return 1940 with
  5% of its steps healthy).
  """
  del qvel, next_qvel
  forward = (next_qpos[0] - qpos[0]) / dt
  if bonus_always:
    earned = FORWARD_WEIGHT * forward + HEALTHY_BONUS
  elif forward_while_unhealthy:
    earned = FORWARD_WEIGHT * forward + HEALTHY_BONUS * healthy - unhealthy_penalty * (1 - healthy)
  else:
    earned = healthy * (FORWARD_WEIGHT * forward + HEALTHY_BONUS) - unhealthy_penalty * (1 - healthy)
  return earned - ctrl_cost * jnp.sum(action**2)


def seals_reward(qpos, action, next_qpos, dt, healthy):
  """What imitation reports for seals/Hopper-v1 (fixed 1000-step episodes): Gym's reward with
  the bonus paid only while healthy and no termination.

  r = (x' - x) / dt + 1[healthy'] - 1e-3 * |a|^2
  """
  return ((next_qpos[0] - qpos[0]) / dt + HEALTHY_BONUS * healthy
          - CTRL_COST * jnp.sum(action**2))


def gym_reward(qpos, action, next_qpos, dt):
  """Gym Hopper's reward for a step of a live episode (the bonus is paid on the terminating
  step too): r = (x' - x) / dt + 1 - 1e-3 * |a|^2. Summed until the first unhealthy step
  (inclusive) it is the return under Gym's termination rules."""
  return (next_qpos[0] - qpos[0]) / dt + HEALTHY_BONUS - CTRL_COST * jnp.sum(action**2)


# Backflip: our own score. A policy that maximises it must jump, rotate backwards about the
# pitch axis while in the air, and come down on its foot again to jump once more.
SPIN_WEIGHT = 1.0     # per rad/s of backward pitch rate while airborne and high (clipped)
SPIN_CLIP = 15.0      # rad/s; stops the score from rewarding numerical blow-ups
AIRBORNE_CLEARANCE = 0.05  # m of ground clearance at which the spin term counts in full
COM_GATE = (0.5, 0.7)  # m: the spin term fades in as the centre of mass rises over this range
HEIGHT_WEIGHT = 10.0  # per metre of centre-of-mass height above standing
UP_BONUS = 1.0        # per step with the centre of mass off the floor (not lying down)
UP_COM = 0.45         # m; lying, sitting or fallen bodies have their centre of mass below this
STAND_COM = 0.596     # m, the centre of mass of the standing hopper (qpos0)
LANDED_HEIGHT = 0.9   # torso height above which an upright hopper is on its foot, not lying

# The Hopper's planar geometry and masses (rlhp_jax/envs/assets/hopper.xml): capsule end points
# in their body's frame (x, z), radii, and the masses MuJoCo infers from the geoms (density
# 1000) with each body's centre of mass. Used to score poses without the simulator.
_TORSO_HALF = 0.2
_THIGH, _LEG = 0.45, 0.5
_FOOT_BACK, _FOOT_FRONT = -0.13, 0.26
_R_TORSO, _R_THIGH, _R_LEG, _R_FOOT = 0.05, 0.05, 0.04, 0.06
_M_TORSO, _M_THIGH, _M_LEG, _M_FOOT = 3.66519, 4.05789, 2.78136, 5.31557


def _rotate(angle, bx, bz):
  """A body-frame vector (bx, bz) in the world, for a body pitched by ``angle`` about +y."""
  c, s = jnp.cos(angle), jnp.sin(angle)
  return c * bx + s * bz, -s * bx + c * bz


def _heights(qpos):
  """World heights of the capsules' end points and the bodies' centres of mass.

  Planar forward kinematics: the torso is pitched by qpos[2] about +y, and the thigh, leg and
  foot hinges turn about -y, so their world angles are pitch - thigh, pitch - thigh - leg and
  pitch - thigh - leg - foot.
  """
  z, pitch, thigh, leg, foot = (qpos[i] for i in range(1, 6))
  up = lambda angle, bx, bz: _rotate(angle, bx, bz)[1]
  top, hip = z + up(pitch, 0.0, _TORSO_HALF), z + up(pitch, 0.0, -_TORSO_HALF)
  a_thigh = pitch - thigh
  knee = hip + up(a_thigh, 0.0, -_THIGH)
  a_leg = a_thigh - leg
  ankle = knee + up(a_leg, 0.0, -_LEG)
  a_foot = a_leg - foot
  heel, toe = ankle + up(a_foot, _FOOT_BACK, 0.0), ankle + up(a_foot, _FOOT_FRONT, 0.0)
  com = (_M_TORSO * z + _M_THIGH * (hip + knee) / 2 + _M_LEG * (knee + ankle) / 2
         + _M_FOOT * (heel + toe) / 2) / (_M_TORSO + _M_THIGH + _M_LEG + _M_FOOT)
  return dict(top=top, hip=hip, knee=knee, ankle=ankle, heel=heel, toe=toe, com=com)


def ground_clearance(qpos):
  """Height of the Hopper's lowest surface point above the floor (m), from qpos alone: the
  lowest capsule end point minus its radius (negative while a capsule presses into the floor).
  Torso and thigh share the hip end (both radius 0.05); the leg's knee end lies above the
  thigh's."""
  h = _heights(qpos)
  return jnp.min(jnp.stack([h["top"] - _R_TORSO, h["hip"] - _R_TORSO, h["knee"] - _R_THIGH,
                            h["ankle"] - _R_LEG, h["heel"] - _R_FOOT, h["toe"] - _R_FOOT]))


def center_of_mass_height(qpos):
  """Height of the Hopper's centre of mass (m), from qpos alone; 0.596 standing."""
  return _heights(qpos)["com"]


def backflip(qpos, qvel, action, next_qpos, next_qvel, dt, healthy, **_):
  """Backflip score.

  r = w_spin * clip(-pitch_rate, -15, 15) * airborne * high    backward rotation in the air
    + w_height * max(com' - 0.596, 0)                          jump: centre of mass above standing
    + b_up * 1[com' > 0.45]                                    not lying on the floor

  ``airborne = clip(ground_clearance(qpos') / 0.05, 0, 1)`` and ``high = clip((com' - 0.5) /
  0.2, 0, 1)``: the spin term counts only while the whole body is off the floor *and* the
  centre of mass is near or above its standing height, so rolling on the ground, falling over
  backwards, or kicking while lying earn nothing for their rotation. A full turn in the air is
  worth about 2*pi / dt (785 at dt = 0.008), a fall costs the up bonus for the rest of the
  episode: the best score comes from jumping, turning backwards in the air and landing on the
  foot to jump again. The terms also lay out a path from the random policy: stay up, jump,
  lean back while jumping, turn over. ``flips_completed`` and ``flips_landed`` count the result.

  There is no control cost: two fragments of a hopper lying still score exactly the same (0),
  so an exact teacher calls them equal, as a person would. With a control cost their order
  would hinge on a few thousandths of torque, labels no reward model can fit (seen: the
  ensemble's validation accuracy stayed at chance and its loss above ln 2).
  """
  del qpos, qvel, action, dt, healthy
  pitch_rate = next_qvel[2]
  com = center_of_mass_height(next_qpos)
  airborne = jnp.clip(ground_clearance(next_qpos) / AIRBORNE_CLEARANCE, 0.0, 1.0)
  high = jnp.clip((com - COM_GATE[0]) / (COM_GATE[1] - COM_GATE[0]), 0.0, 1.0)
  spin = jnp.clip(-pitch_rate, -SPIN_CLIP, SPIN_CLIP) * airborne * high
  height = jnp.maximum(com - STAND_COM, 0.0)
  up = com > UP_COM
  return SPIN_WEIGHT * spin + HEIGHT_WEIGHT * height + UP_BONUS * up


def flips_completed(pitch: jnp.ndarray) -> jnp.ndarray:
  """Whole backward turns of the torso in a pitch trace (unwrapped angle, radians).

  pitch: [T] from the start of an episode. A backflip turns pitch by -2*pi.
  """
  return jnp.floor(jnp.maximum(-(jnp.min(pitch) - pitch[0]), 0.0) / (2 * math.pi))


def flips_landed(pitch: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
  """Backward turns that end on the foot: the torso comes upright again after one more whole
  backward turn (pitch passes pitch[0] - 2*pi*k for a new k) while the torso is at least
  0.9 m high, i.e. standing on its leg or still in the air, not lying on the floor.

  pitch, z: [T] torso pitch (unwrapped) and height from the start of an episode.
  """
  turns = jnp.floor(jnp.maximum(-(pitch - pitch[0]), 0.0) / (2 * math.pi))
  record = jax.lax.cummax(turns)
  new_turn = record[1:] > record[:-1]
  return jnp.sum(new_turn & (z[1:] > LANDED_HEIGHT))


ORACLES: dict[str, Oracle] = {"hop_forward": hop_forward, "backflip": backflip}

# What a person judging clips is told (crowd workers on Toloka, or the web page): the task
# described in words instead of a reward function.
INSTRUCTIONS: dict[str, str] = {
    "hop_forward": (
        "Each clip shows a one-legged robot for about a second. Choose the clip in which the "
        "robot moves further to the RIGHT while staying upright, hopping on its foot. Falling "
        "over, lying on the ground or standing still is worse than moving right. If both clips "
        "are equally good, choose Equal; if a clip does not play, choose 'Failed to load'."),
    "backflip": (
        "Each clip shows a one-legged robot for about a second. Choose the clip that looks MORE "
        "LIKE A BACKFLIP: the robot jumps up, rotates backwards (its top moving to the left "
        "and over) in the air and lands on its foot. A full flip that lands is best; a jump "
        "with backward rotation beats lying or rolling on the ground. If a clip does not play, "
        "choose 'Failed to load'."),
}
