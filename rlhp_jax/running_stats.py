"""Running mean and variance over batches (Chan et al.'s parallel update), as a pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
  count: jax.Array   # [] float32, samples seen
  mean: jax.Array    # [D]
  m2: jax.Array      # [D] sum of squared deviations from the mean

  @property
  def std(self) -> jax.Array:
    return jnp.sqrt(self.m2 / jnp.maximum(self.count, 1.0) + 1e-8)


def init(size: int) -> RunningStats:
  return RunningStats(count=jnp.zeros(()), mean=jnp.zeros(size), m2=jnp.zeros(size))


def update(stats: RunningStats, batch: jax.Array) -> RunningStats:
  """Folds batch [N, D] into the statistics."""
  n = jnp.asarray(batch.shape[0], jnp.float32)
  b_mean = batch.mean(0)
  b_m2 = jnp.sum((batch - b_mean) ** 2, axis=0)
  total = stats.count + n
  delta = b_mean - stats.mean
  mean = stats.mean + delta * n / total
  m2 = stats.m2 + b_m2 + delta**2 * stats.count * n / total
  return RunningStats(count=total, mean=mean, m2=m2)


def normalize(stats: RunningStats, x: jax.Array, clip: float = 10.0) -> jax.Array:
  """(x - mean) / std, clipped to [-clip, clip]; identity-like before any update (std ~ 1e-4
  guarded by returning x unchanged while count is 0)."""
  z = jnp.clip((x - stats.mean) / stats.std, -clip, clip)
  return jnp.where(stats.count > 0, z, x)
