"""Fragments cut from a rollout and the choice of which pairs to query. Array ops only.

A fragment is ``fragment_length`` consecutive steps of one env of a rollout (Transition[T, B]).
Candidate pairs are drawn at random; *disagreement* selection draws ``oversample`` times more
candidates than it needs and keeps those on which the reward ensemble's members disagree most
about which fragment is better (variance over members of P[fragment 1 preferred]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlhp_jax.reward_model import preference_probability


@struct.dataclass
class FragmentPairs:
  """N pairs of fragments of length L; every leaf is [N, 2, L, ...]."""

  obs: jax.Array          # [N, 2, L, D]
  action: jax.Array       # [N, 2, L, A]
  true_reward: jax.Array  # [N, 2, L] oracle rewards: for synthetic teachers and diagnostics only
  qpos: jax.Array         # [N, 2, L, nq] physical states for rendering the clips
  qvel: jax.Array         # [N, 2, L, nv]


def sample_starts(key: jax.Array, num_pairs: int, horizon: int, num_envs: int, length: int):
  """Random (time, env) starts for both fragments of ``num_pairs`` pairs: ([N, 2], [N, 2])."""
  kt, kb = jax.random.split(key)
  t0 = jax.random.randint(kt, (num_pairs, 2), 0, horizon - length + 1)
  env = jax.random.randint(kb, (num_pairs, 2), 0, num_envs)
  return t0, env


def cut(transitions, t0: jax.Array, env: jax.Array, length: int) -> FragmentPairs:
  """Gathers fragments [t0, t0 + length) of env ``env`` from Transition[T, B] (vectorised)."""
  steps = t0[..., None] + jnp.arange(length)          # [N, 2, L]
  envs = jnp.broadcast_to(env[..., None], steps.shape)
  take = lambda x: x[steps, envs]
  return FragmentPairs(obs=take(transitions.obs), action=take(transitions.action),
                       true_reward=take(transitions.true_reward), qpos=take(transitions.qpos),
                       qvel=take(transitions.qvel))


def disagreement(member_returns: jax.Array, rater_noise: float) -> jax.Array:
  """Variance over members of P[fragment 1 preferred]: member_returns [K, N, 2] -> [N]."""
  p = preference_probability(member_returns[..., 0], member_returns[..., 1], rater_noise)
  return jnp.var(p, axis=0)


def select(key, transitions, num_pairs: int, length: int, mode: str, oversample: int,
           member_returns_fn, rater_noise: float):
  """Chooses ``num_pairs`` pairs to query from a rollout.

  mode "random": pairs drawn uniformly. mode "disagreement": ``num_pairs * oversample``
  candidates, the ``num_pairs`` with the largest ensemble disagreement kept (in decreasing
  order). member_returns_fn(obs [M, 2, L, D], action) -> [K, M, 2].
  Returns (FragmentPairs [num_pairs], disagreement of the kept pairs [num_pairs]).
  """
  horizon, num_envs = transitions.obs.shape[:2]
  n_cand = num_pairs * (oversample if mode == "disagreement" else 1)
  t0, env = sample_starts(key, n_cand, horizon, num_envs, length)
  cand = cut(transitions, t0, env, length)
  score = disagreement(member_returns_fn(cand.obs, cand.action), rater_noise)
  if mode == "disagreement":
    score, keep = jax.lax.top_k(score, num_pairs)
    cand = jax.tree.map(lambda x: x[keep], cand)
  return cand, score
