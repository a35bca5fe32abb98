"""Preference buffer on device (fixed capacity, count and masks: adding labels never recompiles)
and the label schedule."""

from __future__ import annotations

import dataclasses
from typing import Literal

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlhp_jax import config_errors as v


@dataclasses.dataclass(frozen=True)
class PreferenceConfig:
  """Queries: fragments, pair selection and the label schedule."""

  total_labels: int = 700
  """Label budget for the whole run (pairs queried; skipped pairs count too)."""
  initial_fraction: float = 0.25
  """Share of the budget collected from the initial random policy before RL starts."""
  pairs_per_iteration: int = 32
  """Most pairs queried in one iteration (fixed query shape)."""
  schedule: Literal["paper", "hyperbolic"] = "paper"
  """After the initial share: "paper" rate ~ tau / (T + tau) (cumulative ~ log(1 + T / tau)),
  "hyperbolic" cumulative ~ T / (T + tau); both reach the budget at the end of the run."""
  schedule_timescale: float = 2e6
  """tau, in env steps (the paper uses 2e6)."""
  labels_until: float = 1.0
  """Share of the run's RL env steps by which the schedule has asked for the whole budget (the
  schedule's shape is squeezed into that span). 1: labels arrive until the last iteration.
  Below 1, the rest of the run trains PPO on a reward model whose data no longer grows.
  Measured on the main job (session 18, 8 seeds, benchmarks/RESULTS.md): at 0.67 the seeds that
  had not learned to stay in the healthy range by 2 M steps stayed out of it to the end."""
  fragment_length: int = 25
  """Env steps per fragment (the paper: 1-2 s of clip; the Toloka seed uses 150)."""
  min_fragment_length: int | None = None
  """When below ``fragment_length``: each candidate fragment's length is drawn uniformly from
  this .. ``fragment_length`` (``fragments.with_lengths``), so a pair can set a longer fragment
  against a shorter one, and both the synthetic teacher and the reward model sum only the steps
  a fragment holds. Labels on pairs of one length leave a reward's level per step free (a
  constant per step changes no preference), so what a step inside Hopper's healthy range is
  worth against one outside is bounded only by the exits the policy shows; a pair of two
  lengths asks whether the longer one's extra steps were worth having. None (the default):
  every fragment is ``fragment_length`` long. Synthetic labels only (crowd and human clips are
  rendered at one length). Measured on the main job (session 39, 5-10 steps, seeds 0-7,
  benchmarks/RESULTS.md): 0 of 8 seeds meet issue 10's bar (the main job on the same seeds: 4
  of 8), Gym-rules IQM 0.10 [0.05, 0.41] of the main job's, paired; the learned price of a
  healthy step stays at 0.19 m/s on seed 0 (the task: 3.9). The labels fix a step's level, but
  the brief exits are still priced like the healthy steps beside them. Not adopted."""
  selection: Literal["disagreement", "entropy", "information", "random"] = "disagreement"
  """"disagreement": keep the candidate pairs on which the ensemble's members disagree most;
  "entropy": those whose outcome the ensemble's mean prediction is least sure of (nearest 1/2);
  "information": those whose label tells the members most (mutual information, BALD: entropy
  without the pairs every member calls an even tie); "random": pairs drawn uniformly."""
  oversample: int = 10
  """Candidate pairs drawn per selected pair for disagreement, entropy or information
  selection."""
  random_share: float = 0.0
  """With disagreement, entropy or information selection: this share of each query's pairs is
  drawn uniformly from the candidates the score did not keep, spread evenly through the query
  (0.25: every fourth pair), so a query cut short by the schedule keeps the share. Uncertainty
  scores never ask about pairs the ensemble is sure of, so they cannot find where it is sure
  and wrong (a fast hop that leaves the healthy range against a slower one that stays in, when
  the reward prices an exit too low); uniform picks can. 0 turns this off. Measured on the main
  job (session 19, 8 seeds, benchmarks/RESULTS.md): at 0.25 Gym-rules IQM 621 [64, 2323]
  against 3302 [1977, 3592] without; the intervals overlap, not adopted."""
  even_margin: float = 0.0
  """Candidates that every ensemble member predicts within this distance of 1/2 (ties the
  ensemble already knows, e.g. two fragments of a fallen hopper) rank below all others in
  disagreement, entropy and information selection; 0 turns this off. Entropy selection
  otherwise asks for them first: a label of 1/2 on such a pair teaches nothing. Measured on
  the main job (session 17, benchmarks/RESULTS.md): at 0.03 it marks under 0.5% of candidates
  and the ties bought fall only from 99 to 86; most ties are asked early, before the members
  agree that one fallen hopper is as good as another."""
  same_step_pairs: bool = False
  """Both fragments of a candidate pair start at the same step of their episodes (two envs, or
  two episodes, at one phase: both first hops from standing, say), so a label compares two
  behaviours in one situation, not two phases of an episode that differ for reasons no policy
  controls. Off: the two starts are drawn independently. Measured on the main job (session 17):
  it multiplies the ties (a falling policy falls at the same step in every env, so both
  fragments show a fallen hopper): 99-623 of 700 labels per seed."""
  archive_size: int = 0
  """Fragments kept from earlier iterations' rollouts (a ring; ``pairs_per_iteration`` fragments
  of each iteration's rollouts are written over the oldest), so that candidate pairs can set
  what the policy does now against what it did before (``fragments.Archive``). 0 turns it off.
  The main job's iteration is 8,192 env steps, so 2,048 reach about 0.5 M steps back."""
  archive_share: float = 0.5
  """With an archive: the share of candidate pairs whose second fragment is drawn from it
  (uniformly over its entries, either side of the pair). Selection then ranks them with the
  others. Measured on the main job (session 22, 8 seeds, benchmarks/RESULTS.md): size 2048,
  share 0.5 ended at Gym-rules IQM 754 [211, 1897] against 3302 [1977, 3592] without (one
  seed upright through every episode against five); entropy selection kept archived pairs at
  about the share drawn, so half the labels compared the policy with its past. Off."""
  branch_share: float = 0.0
  """The share of candidate pairs whose second fragment is a *branch* (``branches``): the
  current policy run from the first fragment's first state with one constant offset on its
  control, so the pair compares two behaviours from one state; selection then ranks them with
  the others. 0 turns it off. A policy's own rollouts rarely pair its upright hop with the
  faster stride that would leave the healthy range, and the exact teacher's answer on such a
  pair is what prices an exit. Costs round(candidates x share) x fragment_length simulator
  steps an iteration (the main job's shape at 0.5: 1,600 beside PPO's 8,192), not counted in
  the run's env steps (PPO never sees them). Fixed-horizon episodes only (a branch runs past
  a fall, which ends a Gym-style episode). Measured on the main job (session 24, 8 seeds,
  benchmarks/RESULTS.md): at 0.5 (noise 0.5) Gym-rules IQM 138 [92, 978] against 3215 [1894,
  3591] without (entropy selection keeps the near-even branched pairs first: ties rise, exits
  against healthy fragments fall); at 0.15 (noise 1.0) 2309 [499, 3528]. Random offsets make
  no faster exits than the policy's own, and the learned price of a healthy step does not
  move. Off."""
  branch_noise: float = 0.5
  """Standard deviation of a branch's control offset, per actuator, in the box's units (the
  control is in [-1, 1])."""
  rollouts_per_iteration: int = 1
  """PPO rollouts (each followed by its PPO update) per RLHP iteration. Pairs are selected from
  all of them, then labelled, and the reward model trains once: with small PPO batches this
  keeps the reward model's training and the candidate pool per env step independent of the
  PPO shape."""

  def __post_init__(self):
    v.positive_int(self.total_labels, "prefs.total_labels")
    v.probability(self.initial_fraction, "prefs.initial_fraction")
    v.positive_int(self.pairs_per_iteration, "prefs.pairs_per_iteration")
    v.one_of(self.schedule, ("paper", "hyperbolic"), "prefs.schedule")
    v.positive(self.schedule_timescale, "prefs.schedule_timescale")
    until = self.labels_until
    v.require(isinstance(until, (int, float)) and not isinstance(until, bool) and 0 < until <= 1,
              "prefs.labels_until",
              f"must be a share of the run in (0, 1] (1: labels until the end), "
              f"got {self.labels_until!r}")
    v.positive_int(self.fragment_length, "prefs.fragment_length")
    shortest = self.min_fragment_length
    v.require(shortest is None or (isinstance(shortest, int) and not isinstance(shortest, bool)
                                   and 1 <= shortest <= self.fragment_length),
              "prefs.min_fragment_length",
              f"must be None (every fragment prefs.fragment_length long) or a whole number of "
              f"steps in 1 .. prefs.fragment_length ({self.fragment_length}), got {shortest!r}")
    v.one_of(self.selection, ("disagreement", "entropy", "information", "random"),
             "prefs.selection")
    v.positive_int(self.oversample, "prefs.oversample")
    v.require(0 <= self.random_share <= 1, "prefs.random_share",
              f"must be a share in [0, 1] (0 turns it off), got {self.random_share!r}")
    v.non_negative(self.even_margin, "prefs.even_margin")
    v.require(self.even_margin < 0.5, "prefs.even_margin",
              f"must be below 0.5 (0 turns it off), got {self.even_margin!r}")
    v.positive_int(self.rollouts_per_iteration, "prefs.rollouts_per_iteration")
    size = self.archive_size
    v.require(isinstance(size, int) and not isinstance(size, bool)
              and (size == 0 or size >= self.pairs_per_iteration), "prefs.archive_size",
              f"must be 0 (off) or at least prefs.pairs_per_iteration "
              f"({self.pairs_per_iteration}), got {size!r}")
    v.probability(self.archive_share, "prefs.archive_share")
    v.probability(self.branch_share, "prefs.branch_share")
    v.positive(self.branch_noise, "prefs.branch_noise")
    v.require(self.archive_size == 0 or self.archive_share + self.branch_share <= 1,
              "prefs.branch_share",
              f"with an archive, prefs.archive_share + prefs.branch_share must be at most 1 "
              f"(each takes its own candidates), got {self.archive_share} + {self.branch_share}")

  @property
  def min_length(self) -> int:
    """The shortest fragment's length (``fragment_length`` when lengths do not vary)."""
    return self.fragment_length if self.min_fragment_length is None else self.min_fragment_length

  @property
  def initial_labels(self) -> int:
    return int(round(self.total_labels * self.initial_fraction))


def labels_due(cfg: PreferenceConfig, env_steps, total_env_steps: int):
  """Cumulative labels the schedule asks for once ``env_steps`` of RL have run (after the initial
  share). Monotone, equals ``total_labels`` from ``labels_until * total_env_steps`` on."""
  total_env_steps = max(1, int(round(cfg.labels_until * total_env_steps)))
  tau = cfg.schedule_timescale
  t = jnp.asarray(env_steps, jnp.float32)
  shape = {"paper": lambda x: jnp.log1p(x / tau), "hyperbolic": lambda x: x / (x + tau)}
  g = shape[cfg.schedule]
  # the budget is due in full at the end, exactly: XLA may fold g(total) at compile time with a
  # log1p that differs in the last bit from the one it runs, and floor(699.99994) asks for 699
  frac = jnp.where(t >= total_env_steps, 1.0,
                   jnp.clip(g(t) / g(jnp.float32(total_env_steps)), 0.0, 1.0))
  return cfg.initial_labels + (cfg.total_labels - cfg.initial_labels) * frac


def pairs_to_request(cfg: PreferenceConfig, requested, rl_env_steps, total_env_steps):
  """How many pairs this iteration asks for: the initial share first (policy frozen), then the
  schedule; never more than ``pairs_per_iteration``, never past the budget."""
  warmup = requested < cfg.initial_labels
  due = jnp.where(warmup, cfg.initial_labels,
                  jnp.floor(labels_due(cfg, rl_env_steps, total_env_steps)).astype(jnp.int32))
  return jnp.clip(due - requested, 0, cfg.pairs_per_iteration).astype(jnp.int32), warmup


def equal_labels(buffer) -> jax.Array:
  """How many stored labels say the two fragments are equally good (label 1/2). An exact
  teacher answers so only for pairs of equal return, e.g. two fragments of a fallen hopper:
  labels bought that cannot move a reward model's ranking."""
  stored = jnp.arange(buffer.capacity) < buffer.count
  return jnp.sum(stored & (buffer.label == 0.5)).astype(jnp.int32)


@struct.dataclass
class PreferenceBuffer:
  """Fixed-capacity store of labelled fragment pairs. Leaves have a leading capacity axis C."""

  obs: jax.Array          # [C, 2, L, D]
  action: jax.Array       # [C, 2, L, A]
  label: jax.Array        # [C] P(fragment 1 preferred): 1, 0 or 0.5
  is_val: jax.Array       # [C] bool, held out for validation
  weight: jax.Array       # [C, K] bootstrap multiplicity per ensemble member
  oracle_return: jax.Array  # [C, 2] true fragment returns (diagnostics only; never trained on)
  counted: jax.Array      # [C, 2, L] 1 for the steps each fragment holds (min_fragment_length)
  count: jax.Array        # [] int32, filled entries (entries [0, count) are valid)

  @property
  def capacity(self) -> int:
    return self.label.shape[0]

  def filled(self) -> jax.Array:
    return jnp.arange(self.capacity) < self.count


def init_buffer(capacity: int, length: int, obs_size: int, action_size: int,
                ensemble_size: int) -> PreferenceBuffer:
  return PreferenceBuffer(
      obs=jnp.zeros((capacity, 2, length, obs_size)),
      action=jnp.zeros((capacity, 2, length, action_size)),
      label=jnp.zeros((capacity,)), is_val=jnp.zeros((capacity,), bool),
      weight=jnp.zeros((capacity, ensemble_size)), oracle_return=jnp.zeros((capacity, 2)),
      counted=jnp.ones((capacity, 2, length)), count=jnp.zeros((), jnp.int32))


def add(buffer: PreferenceBuffer, obs, action, label, valid, oracle_return, key,
        validation_fraction: float, bootstrap: bool, counted=None) -> PreferenceBuffer:
  """Appends the ``valid`` pairs of a fixed-size batch (N pairs) in order, without recompiling.

  Invalid pairs (not requested, skipped by the teacher, unanswered) are dropped by scattering them
  to an out-of-range index. Each new pair is held out for validation with probability
  ``validation_fraction`` and gets Poisson(1) bootstrap weights, one per member.

  Shapes: obs [N, 2, L, D] and action [N, 2, L, A] as the buffer's entries, label [N],
  valid [N], oracle_return [N, 2], counted [N, 2, L] (None: every step of every fragment);
  checked when traced (chex), so a caller that cut fragments of another length or sent another
  batch fails here, naming the argument.
  """
  chex.assert_rank(label, 1, custom_message="preferences.add: label must be [N]")
  n = label.shape[0]
  chex.assert_shape(obs, (n, *buffer.obs.shape[1:]), custom_message=(
      "preferences.add: obs must be [N, 2, L, D] like the buffer's pairs"))
  chex.assert_shape(action, (n, *buffer.action.shape[1:]), custom_message=(
      "preferences.add: action must be [N, 2, L, A] like the buffer's pairs"))
  chex.assert_shape(valid, (n,), custom_message="preferences.add: valid must be [N]")
  chex.assert_shape(oracle_return, (n, 2),
                    custom_message="preferences.add: oracle_return must be [N, 2]")
  if counted is None:
    counted = jnp.ones(obs.shape[:3])
  chex.assert_shape(counted, obs.shape[:3],
                    custom_message="preferences.add: counted must be [N, 2, L] like the pairs")
  valid = valid.astype(bool)
  slot = buffer.count + jnp.cumsum(valid) - 1
  slot = jnp.where(valid & (slot < buffer.capacity), slot, buffer.capacity)
  k_val, k_boot = jax.random.split(key)
  is_val = jax.random.bernoulli(k_val, validation_fraction, (n,))
  k = buffer.weight.shape[1]
  weight = (jax.random.poisson(k_boot, 1.0, (n, k)).astype(jnp.float32) if bootstrap
            else jnp.ones((n, k)))
  put = lambda dst, src: dst.at[slot].set(src.astype(dst.dtype), mode="drop")
  return PreferenceBuffer(
      obs=put(buffer.obs, obs), action=put(buffer.action, action), label=put(buffer.label, label),
      is_val=put(buffer.is_val, is_val), weight=put(buffer.weight, weight),
      oracle_return=put(buffer.oracle_return, oracle_return),
      counted=put(buffer.counted, counted),
      count=jnp.minimum(buffer.count + jnp.sum(valid), buffer.capacity).astype(jnp.int32))


def to_numpy(buffer: PreferenceBuffer) -> dict[str, np.ndarray]:
  """Host copy of the filled part (for label stores and tests)."""
  n = int(buffer.count)
  return {k: np.asarray(getattr(buffer, k))[:n]
          for k in ("label", "is_val", "weight", "oracle_return")}
