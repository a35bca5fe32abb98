"""Synthetic teachers, pure JAX: label fragment pairs by the task oracle's per-step rewards.

All six of B-Pref's teachers (Lee et al. 2021) are one parametric teacher with different
settings, so an ablation over teachers is a ``vmap`` over ``TeacherParams``, one compile:

    R_i    = sum_t gamma^(L-1-t) r_i[t]                 myopic when gamma < 1 (exact: gamma = 1)
    skip   if max(R_1, R_2) < skip * S (skip > 0)      no label (the pair is dropped)
    equal  if |R_1 - R_2| < equal * S                   label 0.5
    label  = 1[R_1 > R_2]                               exact (beta = 0)
           ~ Bernoulli(sigmoid(beta * (R_1 - R_2)))     Boltzmann-rational when beta > 0
           = sigmoid(beta * (R_1 - R_2))                graded (``graded``, beta > 0): the
                                                        teacher reports how sure it is, so
                                                        labels carry the margin, not only
                                                        the sign (an ablation; not B-Pref's)
    flip the label with probability ``mistake``         mistakes

``S`` is the largest |R| among the pairs actually asked in the current query batch (``mask``), so
``skip`` and ``equal`` are fractions of the batch's scale and carry across tasks. Label 1 means fragment 1 is preferred.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from rlhp_jax import config_errors as v


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
  """One synthetic teacher. The defaults are the exact teacher."""

  beta: float = 0.0
  """Rationality of a Boltzmann teacher; 0 means deterministic (exact)."""
  gamma: float = 1.0
  """Myopic discount toward the fragment's end; 1 weighs all steps equally."""
  mistake: float = 0.0
  """Probability of flipping the label."""
  skip: float = 0.0
  """Skip pairs whose better return is below this fraction of the batch's largest |return|."""
  equal: float = 0.0
  """Label 0.5 when returns differ by less than this fraction of the batch's largest |return|."""
  graded: bool = False
  """Report the Boltzmann probability itself, sigmoid(beta * (R_1 - R_2)), as a soft label
  instead of sampling a hard one from it (needs beta > 0). Exact labels identify only which
  fragment is better; graded ones also say by how much, which pins the scale of one reward
  term against another (e.g. the price of staying healthy against speed). Session 31, the main
  job with beta 1 over 16 seeds: 10 of 16 meet issue 10's bar (exact labels: 9 of 16), not
  shown to differ, with every kind of failure still there (benchmarks/RESULTS.md)."""

  def __post_init__(self):
    v.non_negative(self.beta, "teacher.beta")
    v.require(not self.graded or self.beta > 0, "teacher.graded",
              "needs teacher.beta > 0 (the label is sigmoid(beta * (R_1 - R_2))); "
              f"got beta={self.beta!r}")
    v.require(0 < self.gamma <= 1, "teacher.gamma", f"must be in (0, 1], got {self.gamma!r}")
    v.probability(self.mistake, "teacher.mistake")
    v.probability(self.skip, "teacher.skip")
    v.probability(self.equal, "teacher.equal")

  def params(self) -> "TeacherParams":
    return TeacherParams(**{k: jnp.asarray(val, jnp.float32)
                            for k, val in dataclasses.asdict(self).items()})


# B-Pref's settings for its six teachers.
PRESETS: dict[str, TeacherConfig] = {
    "exact": TeacherConfig(),
    "boltzmann": TeacherConfig(beta=1.0),
    "mistake": TeacherConfig(mistake=0.1),
    "skip": TeacherConfig(skip=0.1),
    "equal": TeacherConfig(equal=0.1),
    "myopic": TeacherConfig(gamma=0.9),
}


@struct.dataclass
class TeacherParams:
  """TeacherConfig as arrays (vmappable: stack several to sweep teachers in one compile)."""

  beta: jax.Array
  gamma: jax.Array
  mistake: jax.Array
  skip: jax.Array
  equal: jax.Array
  graded: jax.Array


def stack(configs) -> TeacherParams:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *[c.params() for c in configs])


def fragment_return(params: TeacherParams, rewards: jax.Array, counted=None) -> jax.Array:
  """Teacher's return of a fragment: rewards [..., L] -> [...], discounted toward the end.
  ``counted`` [..., L] (1 for the steps a fragment holds, its first ones; None: all L) sums only
  those, and a myopic teacher discounts toward each fragment's own last step."""
  length = rewards.shape[-1]
  if counted is None:
    return jnp.sum(rewards * params.gamma ** jnp.arange(length - 1, -1, -1, dtype=jnp.float32),
                   axis=-1)
  last = jnp.sum(counted, axis=-1, keepdims=True) - 1
  weights = params.gamma ** jnp.maximum(last - jnp.arange(length, dtype=jnp.float32), 0.0)
  return jnp.sum(rewards * weights * counted, axis=-1)


def teach(params: TeacherParams, rewards: jax.Array, key: jax.Array, mask=None, counted=None):
  """Labels a batch of pairs.

  rewards: [N, 2, L] oracle rewards of both fragments of each pair; mask: [N] bool, the pairs
  asked (default all): only they set the scale ``S`` of the skip and equal thresholds;
  counted: [N, 2, L], the steps each fragment holds (``fragment_return``; None: all).
  Returns (label [N] in {0, 0.5, 1}, or in [0, 1] when graded; valid [N] bool; False where the
  teacher skipped).
  """
  returns = fragment_return(params, rewards, counted)       # [N, 2]
  r1, r2 = returns[:, 0], returns[:, 1]
  asked = jnp.ones(r1.shape, bool) if mask is None else jnp.asarray(mask, bool)
  scale = jnp.max(jnp.where(asked[:, None], jnp.abs(returns), 0.0)) + 1e-8
  k_boltz, k_mistake = jax.random.split(key)
  exact = jnp.where(r1 > r2, 1.0, jnp.where(r1 < r2, 0.0, 0.5))
  p_boltz = jax.nn.sigmoid(params.beta * (r1 - r2))
  drawn = jax.random.bernoulli(k_boltz, p_boltz).astype(jnp.float32)
  boltz = jnp.where(params.graded > 0, p_boltz, drawn)
  label = jnp.where(params.beta > 0, boltz, exact)
  flip = jax.random.bernoulli(k_mistake, params.mistake, label.shape)
  label = jnp.where(flip, 1.0 - label, label)
  label = jnp.where(jnp.abs(r1 - r2) < params.equal * scale, 0.5, label)
  valid = (params.skip <= 0) | (jnp.maximum(r1, r2) >= params.skip * scale)
  return label, valid
