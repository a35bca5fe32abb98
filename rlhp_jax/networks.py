"""Actor-critic networks (flax.linen): a Gaussian policy and a value function, separate MLPs."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class MLP(nn.Module):
  """tanh MLP with orthogonal init; the last layer is linear with its own init scale."""

  hidden: Sequence[int]
  out: int
  out_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x))
    return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


class Policy(nn.Module):
  """Diagonal Gaussian over actions: mean from an MLP, state-independent log std.

  ``bounded_mean``: the mean is tanh of the MLP's output, so it stays inside the action box
  [-1, 1] that the env clips samples to; the deterministic policy is then the Gaussian's centre,
  not the box's corner that an unbounded mean drifts past.

  ``min_log_std``: the log std used is max(parameter, min_log_std), so the policy's noise never
  falls below that floor (None: no floor)."""

  hidden: Sequence[int]
  action_size: int
  init_log_std: float = 0.0
  bounded_mean: bool = False
  min_log_std: float | None = None

  @nn.compact
  def __call__(self, obs):
    mean = MLP(self.hidden, self.action_size, out_scale=0.01)(obs)
    if self.bounded_mean:
      mean = jnp.tanh(mean)
    log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                         (self.action_size,))
    if self.min_log_std is not None:
      log_std = jnp.maximum(log_std, self.min_log_std)
    return mean, jnp.broadcast_to(log_std, mean.shape)


class Value(nn.Module):
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, obs):
    return MLP(self.hidden, 1, out_scale=1.0)(obs)[..., 0]


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """log N(x; mean, exp(log_std)^2), summed over the last (action) axis."""
  z = (x - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
  return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)
