"""Fragments cut from a rollout and the choice of which pairs to query. Array ops only.

A fragment is ``fragment_length`` consecutive steps of one env inside one episode (it never
straddles a reset) of a rollout (Transition[T, B]). Candidate pairs are drawn at random;
*disagreement* selection draws ``oversample`` times more candidates than it needs and keeps those
on which the reward ensemble's members disagree most about which fragment is better; *entropy*
selection keeps those whose outcome the ensemble as a whole is least sure of (the mean predicted
preference nearest 1/2: pairs the current reward calls a toss-up, where one label moves the
trade-off between the features the two fragments differ in; B-Pref's entropy sampling, Lee et
al. 2021); *information* selection keeps those whose label would tell the members most about
themselves (entropy of the mean prediction less the members' mean entropy: a pair that every
member calls an even tie scores nothing). With an ``even_margin``, candidates that every member
predicts within that distance of 1/2 (ties the ensemble already knows, such as two fragments of
a fallen hopper) rank below all others in any active mode: each label spent on one is wasted.
With ``same_step`` the two fragments of a candidate start at the same step of their episodes.

An ``Archive`` keeps fragments cut from earlier iterations' rollouts (a ring). With an archive,
a share of the candidates pair a fragment of this iteration's rollouts with one drawn from it,
so a query can compare what the policy does now with what it did a few hundred thousand steps
ago (PEBBLE, Lee et al. 2021, queries from its whole replay buffer): when a policy starts to
trade the healthy range for speed, its fast exits can meet slower upright hops of its past,
pairs that one policy's own rollouts rarely hold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlhp_jax import sampling
from rlhp_jax.envs.hopper import applied_action


@struct.dataclass
class FragmentPairs:
  """N pairs of fragments of length L; every leaf is [N, 2, L, ...]."""

  obs: jax.Array          # [N, 2, L, D]
  action: jax.Array       # [N, 2, L, A]
  true_reward: jax.Array  # [N, 2, L] oracle rewards: for synthetic teachers and diagnostics only
  qpos: jax.Array         # [N, 2, L, nq] physical states for rendering the clips
  qvel: jax.Array         # [N, 2, L, nv]
  counted: jax.Array      # [N, 2, L] 1 for the steps the fragment holds, 0 past its end

  @property
  def counted_reward(self) -> jax.Array:
    """The oracle's reward of the steps each fragment holds (0 past its end): what an exact
    teacher sums (the oracle returns the buffer stores)."""
    return self.true_reward * self.counted


@struct.dataclass
class Archive:
  """Single fragments kept from earlier iterations, a ring of capacity M: ``fragments`` is a
  ``FragmentPairs`` without its pair axis (leaves [M, L, ...], actions as applied), ``count``
  how many were ever written (entry ``count % M`` is overwritten next)."""

  fragments: FragmentPairs
  count: jax.Array   # [] int32

  @property
  def capacity(self) -> int:
    return self.fragments.true_reward.shape[0]


def init_archive(capacity: int, length: int, obs_size: int, action_size: int, nq: int,
                 nv: int) -> Archive:
  z = lambda *shape: jnp.zeros((capacity, length) + shape)
  return Archive(fragments=FragmentPairs(obs=z(obs_size), action=z(action_size),
                                         true_reward=z(), qpos=z(nq), qvel=z(nv), counted=z()),
                 count=jnp.zeros((), jnp.int32))


def archive_add(archive: Archive, key: jax.Array, transitions, length: int,
                num: int) -> Archive:
  """Writes ``num`` fragments cut at uniform valid starts of ``transitions`` ([T, B], any
  leaves ``cut`` reads plus ``done``) over the oldest entries. ``num`` <= capacity."""
  frags = cut(transitions, *uniform_starts(key, transitions.done, length, (num,)),
              length)                                                         # leaves [num, L]
  slot = (archive.count + jnp.arange(num)) % archive.capacity
  kept = jax.tree.map(lambda dst, src: dst.at[slot].set(src.astype(dst.dtype)),
                      archive.fragments, frags)
  return Archive(fragments=kept, count=archive.count + num)


def with_archived_partners(key: jax.Array, cand: FragmentPairs, archive: Archive,
                           share: float) -> tuple[FragmentPairs, jax.Array]:
  """``cand`` ([N, 2, L] pairs drawn i.i.d.) with the first round(N * share) pairs' second
  fragment replaced by one drawn uniformly from the archive's filled entries, then each of
  those pairs put in random order (a rater never learns which side is the past). Unchanged
  while the archive is empty. Returns (pairs, from_archive [N] bool)."""
  k_draw, k_flip = jax.random.split(key)
  n = cand.true_reward.shape[0]
  filled = jnp.minimum(archive.count, archive.capacity)
  idx = jnp.floor(jax.random.uniform(k_draw, (n,)) * filled).astype(jnp.int32)
  idx = jnp.clip(idx, 0, archive.capacity - 1)
  use = (jnp.arange(n) < int(round(n * share))) & (archive.count > 0)
  partners = jax.tree.map(lambda a: a[idx], archive.fragments)
  return with_second_fragments(k_flip, cand, partners, use), use


def with_second_fragments(key: jax.Array, cand: FragmentPairs, partners: FragmentPairs,
                          use: jax.Array) -> FragmentPairs:
  """``cand`` ([N, 2, L] pairs) with the second fragment of the pairs marked by ``use`` [N]
  replaced by ``partners``' (single fragments, leaves [N, L, ...]), each of those pairs then
  put in random order, so a rater never learns which side came from elsewhere."""
  n = use.shape[0]
  flip = use & jax.random.bernoulli(key, 0.5, (n,))

  def mix(c, a):
    at = lambda m: m.reshape((n,) + (1,) * (c.ndim - 2))
    second = jnp.where(at(use), a.astype(c.dtype), c[:, 1])
    pair = jnp.stack([c[:, 0], second], axis=1)
    return jnp.where(at(flip)[:, None], pair[:, ::-1], pair)

  return jax.tree.map(mix, cand, partners)


def valid_starts(done: jax.Array, length: int) -> jax.Array:
  """Where a fragment of ``length`` steps may start without straddling an episode reset.

  done: [T, B] bool, the episode ended with step t. A start t is valid when none of steps
  t .. t + length - 2 ends an episode (the last step may). Returns [T - length + 1, B] bool.
  """
  ends = jnp.concatenate([jnp.zeros((1,) + done.shape[1:], jnp.int32),
                          jnp.cumsum(done.astype(jnp.int32), axis=0)])      # [T + 1, B]
  horizon = done.shape[0]
  starts = jnp.arange(horizon - length + 1)
  return (ends[starts + length - 1] - ends[starts]) == 0


def uniform_starts(key: jax.Array, done: jax.Array, length: int, shape: tuple[int, ...]):
  """(time, env) starts of ``shape``, uniform over the starts whose fragment stays inside one
  episode (uniform over every start when there is none)."""
  flat = sampling.weighted_choice(key, valid_starts(done, length).ravel(), shape)
  return flat // done.shape[1], flat % done.shape[1]


def sample_starts(key: jax.Array, num_pairs: int, done: jax.Array, length: int,
                  episode_step: jax.Array | None = None):
  """Random (time, env) starts for both fragments of ``num_pairs`` pairs, uniform over the
  starts whose fragment stays inside one episode: ([N, 2], [N, 2]).

  With ``episode_step`` ([T, B] int, the env's clock at each step) the second start of a pair
  is drawn uniformly from the other valid starts at the same episode step as the first (and
  independently, as without it, when the first is the only one at its step)."""
  if episode_step is None:
    return uniform_starts(key, done, length, (num_pairs, 2))
  ok = valid_starts(done, length)                                  # [S, B]
  num_envs = done.shape[1]
  k_first, k_second, k_any = jax.random.split(key, 3)
  first = sampling.weighted_choice(k_first, ok.ravel(), (num_pairs,))
  second = _same_step_partner(k_second, first, episode_step[:ok.shape[0]], ok)
  alone = sampling.weighted_choice(k_any, ok.ravel(), (num_pairs,))
  second = jnp.where(second < 0, alone, second)
  flat = jnp.stack([first, second], axis=-1)
  return flat // num_envs, flat % num_envs


def _same_step_partner(key, first, step, ok):
  """For each flat start in ``first`` [N], a uniform draw (flat index) among the other valid
  starts whose episode step equals its own; -1 where there is none. step, ok: [S, B]."""
  never = jnp.iinfo(jnp.int32).max                # invalid starts sort after every step
  keyed = jnp.where(ok, step, never).ravel().astype(jnp.int32)
  order = jnp.argsort(keyed)                      # flat starts grouped by episode step
  grouped = keyed[order]
  position = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))  # inverse of order
  mine = keyed[first]
  lo = jnp.searchsorted(grouped, mine, side="left")
  others = jnp.searchsorted(grouped, mine, side="right") - lo - 1
  pick = jnp.floor(jax.random.uniform(key, first.shape) * others).astype(jnp.int32)
  pick = lo + jnp.minimum(pick, others - 1)
  pick = jnp.where(pick >= position[first], pick + 1, pick)     # skip the first start itself
  return jnp.where(others > 0, order[jnp.clip(pick, 0, keyed.shape[0] - 1)], -1)


def cut(transitions, t0: jax.Array, env: jax.Array, length: int) -> FragmentPairs:
  """Gathers fragments [t0, t0 + length) of env ``env`` from Transition[T, B] (vectorised).
  Actions are the controls the physics applied (clipped), not the raw policy samples. Every
  step is counted (``with_lengths`` shortens fragments)."""
  steps = t0[..., None] + jnp.arange(length)          # [N, 2, L]
  envs = jnp.broadcast_to(env[..., None], steps.shape)
  take = lambda x: x[steps, envs]
  true_reward = take(transitions.true_reward)
  return FragmentPairs(obs=take(transitions.obs), action=applied_action(take(transitions.action)),
                       true_reward=true_reward, qpos=take(transitions.qpos),
                       qvel=take(transitions.qvel), counted=jnp.ones_like(true_reward))


def with_lengths(key: jax.Array, pairs: FragmentPairs, min_length: int) -> FragmentPairs:
  """``pairs`` ([N, 2, L]) with each fragment's length drawn uniformly from min_length .. L,
  independently per fragment: a fragment of length l holds its first l steps, and the steps
  past its end are not counted (``counted`` 0), neither by a synthetic teacher nor by the
  reward model. Unchanged (every step counted) when min_length equals L.

  Why: between two fragments of one length a reward can be shifted by a constant per step
  without changing any preference, so equal-length labels say nothing about what a step is
  worth in itself, and the value of a step inside Hopper's healthy range against one outside
  is bounded only by the exits a policy happens to show (session 19's label audit). A pair of
  different lengths asks whether the extra steps of the longer one were worth having: the
  teacher's answer prices a healthy step (v + 1 in the task) against nothing, and a step
  outside the range (-1) too."""
  length = pairs.counted.shape[-1]
  if min_length >= length:
    return pairs
  n = pairs.counted.shape[0]
  held = jax.random.randint(key, (n, 2), min_length, length + 1)
  counted = (jnp.arange(length) < held[..., None]).astype(pairs.counted.dtype)
  return pairs.replace(counted=pairs.counted * counted)


def disagreement(member_returns: jax.Array) -> jax.Array:
  """How much the members disagree on a pair: member_returns [K, N, 2] -> [N].

  Each member's predicted return difference d_k = R_k(1) - R_k(2) is put on a common scale
  (divided by its root mean square over the N candidates), and the score is the variance of
  the scaled differences over members. Unlike the variance of P[fragment 1 preferred], which
  saturates (every pair scores its maximum once the members are confident and disagree), it
  keeps ranking pairs whatever the members' scales.
  """
  d = member_returns[..., 0] - member_returns[..., 1]                      # [K, N]
  d = d / (jnp.sqrt(jnp.mean(d**2, axis=1, keepdims=True)) + 1e-8)
  return jnp.var(d, axis=0)


def preference_entropy(member_returns: jax.Array) -> jax.Array:
  """How unsure the ensemble is of a pair's outcome: member_returns [K, N, 2] -> [N].

  The binary entropy (nats) of the members' mean Bradley-Terry probability that fragment 1 is
  preferred, mean_k sigmoid(R_k(1) - R_k(2)): log 2 for a pair the ensemble calls even, near 0
  for one it is sure of. Members that are each sure but split also score high.
  """
  return _binary_entropy(jnp.mean(_member_preferences(member_returns), axis=0))


def information_gain(member_returns: jax.Array) -> jax.Array:
  """What a label would tell the ensemble about its own parameters: member_returns [K, N, 2]
  -> [N]. The entropy of the members' mean prediction less the mean of each member's own
  entropy (BALD, Houlsby et al. 2011; the mutual information between the label and the member).

  A pair every member calls even (two fragments of a fallen hopper, which the task scores
  exactly alike) has the largest entropy but no information: each member is sure the answer is
  a toss-up, and a label of 1/2 confirms it. Such pairs fill entropy selection's queries (a
  third of the main job's labels are such ties); here they score 0, as do pairs every member
  is sure of. Pairs on which the members' predictions split score highest.
  """
  p = _member_preferences(member_returns)                                     # [K, N]
  return _binary_entropy(jnp.mean(p, axis=0)) - jnp.mean(_binary_entropy(p), axis=0)


def _member_preferences(member_returns: jax.Array) -> jax.Array:
  """Each member's Bradley-Terry probability that fragment 1 is preferred: [K, N, 2] -> [K, N]."""
  return jax.nn.sigmoid(member_returns[..., 0] - member_returns[..., 1])


def _binary_entropy(p: jax.Array) -> jax.Array:
  p = jnp.clip(p, 1e-7, 1.0 - 1e-7)
  return -(p * jnp.log(p) + (1.0 - p) * jnp.log1p(-p))


SCORES = {"disagreement": disagreement, "entropy": preference_entropy,
          "information": information_gain}
"""The score each active selection mode ranks candidates by."""


def known_ties(member_returns: jax.Array, margin: float) -> jax.Array:
  """Candidates every member calls an even tie: member_returns [K, N, 2] -> [N] bool, true where
  each member's Bradley-Terry probability that fragment 1 is preferred is within ``margin`` of
  1/2. A margin of 0 marks nothing.

  An exact teacher answers 1/2 for two fragments of equal task return (two fragments of a
  fallen hopper both score -10), and an ensemble trained on such answers predicts 1/2 for every
  similar pair, which is entropy selection's top score. Members differ in initialisation and
  bootstrap, so on a pair they have not learned they rarely all land this close to 1/2 (nor,
  measured on the main job, on most fallen pairs when those are asked: see
  ``PreferenceConfig.even_margin``).
  """
  near = jnp.abs(_member_preferences(member_returns) - 0.5) < margin
  return jnp.all(near, axis=0)


def demote(score: jax.Array, mask: jax.Array) -> jax.Array:
  """``score`` with the ``mask``ed entries moved below every unmasked one, order kept within
  each group (so top_k takes masked candidates only when nothing else is left)."""
  drop = jnp.max(score) - jnp.min(score) + 1.0
  return jnp.where(mask, score - drop, score)


def uniform_slots(num_pairs: int, share: float) -> np.ndarray:
  """Which of a query's ``num_pairs`` places take a uniform pick at ``share``: bool [num_pairs],
  spread evenly (place i when floor((i + 1) share) passes an integer), so any first n places
  hold about n * share of them."""
  i = np.arange(num_pairs)
  return np.floor((i + 1) * share + 1e-9) > np.floor(i * share + 1e-9)


def keep_with_uniform_picks(score: jax.Array, num_pairs: int, share: float) -> jax.Array:
  """Indices [num_pairs] into candidates scored [N]: the best by ``score`` in decreasing order,
  with the ``uniform_slots`` places holding candidates outside that best set, the ones drawn
  first (candidates are drawn iid, so these are a uniform pick among the rest)."""
  slots = uniform_slots(num_pairs, share)
  n_top = int(num_pairs - slots.sum())
  order = jnp.argsort(-score)
  rest = jnp.sort(order[n_top:])[:num_pairs - n_top]
  keep = jnp.zeros((num_pairs,), order.dtype)
  keep = keep.at[np.flatnonzero(~slots)].set(order[:n_top])
  return keep.at[np.flatnonzero(slots)].set(rest)


def select(key, transitions, num_pairs: int, length: int, mode: str, oversample: int,
           member_returns_fn, even_margin: float = 0.0, same_step: bool = False,
           random_share: float = 0.0, archive: Archive | None = None,
           archive_share: float = 0.0, branch_fn=None, min_length: int | None = None):
  """Chooses ``num_pairs`` pairs to query from a rollout (Transition[T, B], any leaves with
  obs/action/true_reward/qpos/qvel/done).

  mode "random": pairs drawn uniformly. modes "disagreement", "entropy" and "information":
  ``num_pairs * oversample`` candidates, the ``num_pairs`` with the largest score
  (``SCORES[mode]``) kept, in decreasing order, known ties (``known_ties`` at ``even_margin``)
  last; with ``random_share`` that share of places holds uniform picks among the rest
  (``keep_with_uniform_picks``). With ``same_step`` both fragments of a candidate start at one episode step
  (``transitions.episode_step``). With an ``archive``, ``archive_share`` of the candidates
  pair a fragment of the rollout with an archived one (``with_archived_partners``; the starts
  drawn are the same as without). With ``branch_fn`` (key, candidates) -> (candidates,
  branched [N] bool), e.g. ``branches.with_branched_partners`` bound to a policy, a share of
  the candidates pair a fragment with a branch from its first state. With ``min_length`` below
  ``length`` every candidate fragment's length is drawn from min_length .. length
  (``with_lengths``) before it is scored.
  member_returns_fn(obs [M, 2, L, D], action, counted [M, 2, L]) -> [K, M, 2], the members'
  returns of the counted steps. Returns (FragmentPairs
  [num_pairs], the ensemble disagreement of the kept pairs [num_pairs], reported whatever the
  mode, the fraction of candidates that were known ties, {"archived": , "branched": } the
  fraction of kept pairs with an archived fragment, with a branch).
  """
  active = mode != "random"
  n_cand = num_pairs * (oversample if active else 1)
  t0, env = sample_starts(key, n_cand, transitions.done, length,
                          transitions.episode_step if same_step else None)
  cand = cut(transitions, t0, env, length)
  from_archive = jnp.zeros((n_cand,), bool)
  if archive is not None and archive_share > 0:
    cand, from_archive = with_archived_partners(jax.random.fold_in(key, 1), cand, archive,
                                                archive_share)
  from_branch = jnp.zeros((n_cand,), bool)
  if branch_fn is not None:
    cand, from_branch = branch_fn(jax.random.fold_in(key, 3), cand)
  if min_length is not None:
    cand = with_lengths(jax.random.fold_in(key, 4), cand, min_length)
  returns = member_returns_fn(cand.obs, cand.action, cand.counted)
  spread = disagreement(returns)
  ties = known_ties(returns, even_margin)
  if active:
    ranked = demote(SCORES[mode](returns), ties)
    if random_share > 0:
      keep = keep_with_uniform_picks(ranked, num_pairs, random_share)
    else:
      _, keep = jax.lax.top_k(ranked, num_pairs)
    cand, spread, from_archive, from_branch = jax.tree.map(
        lambda x: x[keep], (cand, spread, from_archive, from_branch))
  partners = {"archived": jnp.mean(from_archive), "branched": jnp.mean(from_branch)}
  return cand, spread, jnp.mean(ties), partners
