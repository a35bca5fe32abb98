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

import jax.numpy as jnp

Oracle = Callable[..., jnp.ndarray]

# Hop forward: the Gym Hopper reward.
FORWARD_WEIGHT = 1.0
HEALTHY_BONUS = 1.0
CTRL_COST = 1e-3


def hop_forward(qpos, qvel, action, next_qpos, next_qvel, dt, healthy):
  """Gym Hopper reward: forward velocity + healthy bonus - control cost.

  r = (x' - x) / dt + 1[healthy] - 1e-3 * |a|^2

  ``healthy`` is 1.0 whenever the healthy bonus is due: always in gym-style mode (Gym pays it
  on the terminating step too), only while healthy in fixed-horizon mode.
  """
  del qvel, next_qvel
  forward = (next_qpos[0] - qpos[0]) / dt
  return FORWARD_WEIGHT * forward + HEALTHY_BONUS * healthy - CTRL_COST * jnp.sum(action**2)


# Backflip: our own score. A policy that maximises it must leave the ground, rotate backwards
# about the pitch axis and come down on its foot again.
SPIN_WEIGHT = 1.0     # per rad/s of backward pitch rate (clipped)
SPIN_CLIP = 10.0      # rad/s; stops the score from rewarding numerical blow-ups
HEIGHT_WEIGHT = 2.0   # per metre of torso height above standing (1.25 m), airborne only
UPRIGHT_BONUS = 0.5   # per step spent upright and standing after any amount of rotation
STAND_HEIGHT = 1.25


def backflip(qpos, qvel, action, next_qpos, next_qvel, dt, healthy):
  """Backflip score.

  r = w_spin * clip(-pitch_rate, -10, 10)           backward rotation (rad/s)
    + w_height * max(z' - 1.25, 0)                   airtime: height above standing
    + b_upright * 1[cos(pitch') > 0.9 and z' > 0.9]  landing: upright on the leg again
    - 1e-3 * |a|^2

  Rolling backwards on the ground earns the spin term at a low rate only (the floor limits the
  pitch rate of a lying body), so the best score comes from jumping, flipping in the air and
  landing upright to jump again. ``flips_completed`` counts the result.
  """
  del qpos, qvel, dt, healthy
  pitch_rate = next_qvel[2]
  spin = jnp.clip(-pitch_rate, -SPIN_CLIP, SPIN_CLIP)
  height = jnp.maximum(next_qpos[1] - STAND_HEIGHT, 0.0)
  upright = (jnp.cos(next_qpos[2]) > 0.9) & (next_qpos[1] > 0.9)
  return (SPIN_WEIGHT * spin + HEIGHT_WEIGHT * height + UPRIGHT_BONUS * upright
          - CTRL_COST * jnp.sum(action**2))


def flips_completed(pitch: jnp.ndarray) -> jnp.ndarray:
  """Whole backward turns of the torso in a pitch trace (unwrapped angle, radians).

  pitch: [T] from the start of an episode. A backflip turns pitch by -2*pi.
  """
  return jnp.floor(jnp.maximum(-(jnp.min(pitch) - pitch[0]), 0.0) / (2 * math.pi))


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
