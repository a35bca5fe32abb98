"""Branched fragments: from a state the policy visited, what a perturbed copy of it does next.

Fragments cut from one policy's rollouts differ from one another more by the situation (a
hop's phase, a stumble) than by the behaviour, and they rarely hold the trade the policy is
about to make: a faster stride that leaves the healthy range against the upright one it does
now. A label on such a pair is what tells a reward model how much an exit costs. A *branch*
restarts the physics from the first state of a candidate's fragment and runs the current
policy for the fragment's length with one constant offset added to the control it applies
(drawn N(0, noise^2) per actuator once per branch, the sum clipped to the box), so the pair
(fragment, branch) compares two behaviours from one state and differs only by what the
offset made the hopper do.

Branches are for queries only: PPO never sees them (its batch stays the policy's own), and
their simulator steps are not counted in a run's env steps (they earn no reward and train no
policy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlhp_jax.envs.hopper import ACTION_SIZE, applied_action
from rlhp_jax.fragments import FragmentPairs, with_second_fragments


def rollout(agent, env, params, key: jax.Array, qpos: jax.Array, qvel: jax.Array, *,
            length: int, noise: float, steer=None, scored_after: bool = False) -> FragmentPairs:
  """``length`` steps of the policy (``agent`` with ``params``, sampled as in training) from
  each of N physical states (qpos [N, nq], qvel [N, nv]), each branch's control offset by a
  constant N(0, noise^2) draw per actuator: single fragments, leaves [N, L, ...] laid out as
  ``fragments.cut`` lays out one side of a pair (obs and state before each step, the control
  the physics applied, the task's reward of the step). ``steer(obs [N, D], control [N, A])
  -> control`` (optional) then changes each step's control (``benchmarks/partner_probe.py``
  steers along the learned reward's gradient, or replaces the sample by the policy's mean);
  the result is clipped to the box. ``scored_after``: the fragments' obs are those each step
  ends in (``reward.observation="after"``), as the run's own fragments are."""
  n = qpos.shape[0]
  k_offset, k_env, k_steps = jax.random.split(key, 3)
  offset = noise * jax.random.normal(k_offset, (n, ACTION_SIZE))
  start = jax.vmap(env.at)(qpos, qvel, jax.random.split(k_env, n))
  step = jax.vmap(env.step)

  def one_step(state, step_key):
    sample, _ = agent.act(params, state.obs, step_key)
    control = applied_action(applied_action(sample) + offset)
    if steer is not None:
      control = applied_action(steer(state.obs, control))
    nxt = step(state, control)
    frag = FragmentPairs(obs=nxt.obs if scored_after else state.obs, action=control,
                         true_reward=nxt.true_reward, qpos=state.data.qpos, qvel=state.data.qvel,
                         counted=jnp.ones_like(nxt.true_reward))
    return nxt, frag

  _, frags = jax.lax.scan(one_step, start, jax.random.split(k_steps, length))  # leaves [L, N]
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), frags)


def with_branched_partners(key: jax.Array, cand: FragmentPairs, *, share: float,
                           rollout_fn) -> tuple[FragmentPairs, jax.Array]:
  """``cand`` ([N, 2, L] pairs drawn i.i.d.) with the last round(N * share) pairs' second
  fragment replaced by a branch from their first fragment's first state, each of those pairs
  then put in random order (a rater never learns which side is the branch). The last, so a
  share of the first places can go to another partner source (``fragments.
  with_archived_partners``) without overlap. rollout_fn(key, qpos [M, nq], qvel [M, nv]) ->
  leaves [M, L, ...] (``rollout`` with its other arguments bound). Returns (pairs, branched
  [N] bool)."""
  n = cand.true_reward.shape[0]
  num = int(round(n * share))
  branched = jnp.arange(n) >= n - num
  if num == 0:
    return cand, branched
  k_branch, k_flip = jax.random.split(key)
  branch = rollout_fn(k_branch, cand.qpos[n - num:, 0, 0], cand.qvel[n - num:, 0, 0])
  partners = jax.tree.map(lambda c, b: c[:, 1].at[n - num:].set(b.astype(c.dtype)), cand,
                          branch)                                          # leaves [N, L]
  return with_second_fragments(k_flip, cand, partners, branched), branched
