"""Which partner for a fragment makes a pair the run's learned reward gets wrong? An offline probe
of query sources, from a finished run's final policy and reward ensemble (a minute or two on CPU).

The labels a run needs are those its reward orders wrongly; for the healthy range, the pairs
where a fragment leaving it is faster, the learned reward prefers it, and the task's return (the
exact teacher) prefers the healthy one: only such a label raises the learned price of a healthy
step. This probe draws ``--pairs`` start states from the policy's own rollouts (stochastic, from
the checkpoint's env states), takes the policy's next ``fragment_length`` steps as one side of a
pair, and runs each partner from the same state (``branches.rollout``) as the other side:

* ``policy``: the policy again, sampled as in training (two draws of the same behaviour);
* ``offset_S``: one constant N(0, S^2) offset per actuator on the policy's control (the
  branches of ``prefs.branch_share``, session 24);
* ``uphill_S``: each step's control moved by S x sqrt(A) along the gradient of the ensemble's
  mean reward with respect to the control (a directed offset: what the learned reward pays for
  now);
* ``deterministic``: clip(mean), the controller that is evaluated.

Per partner, over pairs whose fragment does not cross an episode reset: ``partner_exits`` (share
of partners with a step outside Gym's healthy range), ``fragment_exits``, ``speed_gain``
(partner minus fragment, mean forward velocity, m/s), ``learned_prefers_partner`` (ensemble
mean return), ``teacher_prefers_partner`` (task return; ``ties`` equal), ``wrong_order`` (the
learned reward orders the pair against the task's return, ties left out), ``price_errors``
(partner exits, fragment stays healthy, the learned reward prefers the partner, the task the
fragment), ``entropy`` (mean binary entropy of the members' mean preference: what entropy
selection ranks by) and ``entropy_of_wrong``.

  python benchmarks/partner_probe.py RUN_DIR [--run I] [--pairs 1024] [--steps 256] [--seed 7]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rlhp_jax import branches, checkpoint, config_errors, core, ppo  # noqa: E402
from rlhp_jax.envs.hopper import ACTION_SIZE, applied_action  # noqa: E402

SPEED_INDEX = 5
"""The forward velocity's place in Hopper's observation."""
PARTNERS = {"policy": (0.0, None), "offset_0.5": (0.5, None), "offset_1.0": (1.0, None),
            "uphill_0.2": (0.0, 0.2), "uphill_0.5": (0.0, 0.5), "uphill_1.0": (0.0, 1.0),
            "deterministic": (0.0, "mean")}
"""name: (constant offset's std, steer: None, a step along the reward's gradient, or "mean")."""


def steer_fn(system: core.RLHP, params, reward_state, how):
  """The ``branches.rollout`` steer of a partner kind (None: the sampled control as is)."""
  ens = system.ensemble
  if how is None:
    return None
  if how == "mean":
    return lambda obs, control: system.agent.deterministic_action(params, obs)

  def mean_reward(control, obs):
    inputs = ens.inputs(reward_state.obs_stats, obs)
    return ens.member_rewards(reward_state.params, inputs, control).mean(0).sum()

  def uphill(obs, control):
    g = jax.grad(mean_reward)(control, obs)
    unit = g / (jnp.linalg.norm(g, axis=-1, keepdims=True) + 1e-8)
    return control + how * np.sqrt(ACTION_SIZE) * unit
  return uphill


def binary_entropy(p: np.ndarray) -> np.ndarray:
  p = np.clip(p, 1e-7, 1 - 1e-7)
  return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def score_pairs(frag: dict, partner: dict, frag_members: np.ndarray,
                partner_members: np.ndarray, z_min: float, angle_max: float) -> dict:
  """frag/partner: obs [N, L, D], true_reward [N, L]; *_members: [K, N] member returns. Pure
  numpy."""
  def exits(obs):
    return ((obs[..., 0] <= z_min) | (np.abs(obs[..., 1]) >= angle_max)).any(-1)
  learned = partner_members.mean(0) - frag_members.mean(0)
  task = partner["true_reward"].sum(-1) - frag["true_reward"].sum(-1)
  p_member = 1.0 / (1.0 + np.exp(-(partner_members - frag_members)))
  entropy = binary_entropy(p_member.mean(0))
  decided = task != 0
  wrong = decided & ((learned > 0) != (task > 0))
  p_exit, f_exit = exits(partner["obs"]), exits(frag["obs"])
  return {
      "partner_exits": float(p_exit.mean()), "fragment_exits": float(f_exit.mean()),
      "speed_gain": float((partner["obs"][..., SPEED_INDEX].mean(-1)
                           - frag["obs"][..., SPEED_INDEX].mean(-1)).mean()),
      "learned_prefers_partner": float((learned > 0).mean()),
      "teacher_prefers_partner": float((task > 0).mean()), "ties": float((~decided).mean()),
      "wrong_order": float(wrong.sum() / max(decided.sum(), 1)),
      "price_errors": float((p_exit & ~f_exit & (learned > 0) & (task < 0)).mean()),
      "entropy": float(entropy.mean()),
      "entropy_of_wrong": float(entropy[wrong].mean()) if wrong.any() else None,
  }


def probe(run_dir: str, *, run: int = 0, pairs: int = 1024, steps: int = 256,
          seed: int = 7) -> dict:
  restored = checkpoint.restore_run(run_dir)
  cfg = restored.config
  state = restored.one(run)     # one run of the stack
  system = core.RLHP(cfg)
  params, reward_state, ens = state.ppo.params, state.reward, system.ensemble
  length = cfg.prefs.fragment_length
  k_roll, k_t, k_b, k_partner = jax.random.split(jax.random.PRNGKey(seed), 4)
  tr = jax.jit(lambda k: ppo.rollout(system.agent, system.env, params, state.ppo.env_state, k,
                                     steps)[1])(k_roll)
  t0 = np.asarray(jax.random.randint(k_t, (pairs,), 0, steps - length + 1))
  env = np.asarray(jax.random.randint(k_b, (pairs,), 0, tr.obs.shape[1]))
  t = t0[:, None] + np.arange(length)
  done = np.asarray(tr.done)[t, env[:, None]]
  keep = ~done[:, :-1].any(-1)                   # the fragment stays in one episode
  frag = {"obs": np.asarray(system.scored_obs(tr))[t, env[:, None]][keep],
          "action": np.asarray(applied_action(tr.action))[t, env[:, None]][keep],
          "true_reward": np.asarray(tr.true_reward)[t, env[:, None]][keep]}
  qpos, qvel = tr.qpos[t0[keep], env[keep]], tr.qvel[t0[keep], env[keep]]

  @jax.jit
  def member_returns(obs, action):
    return ens.fragment_returns(reward_state.params, ens.inputs(reward_state.obs_stats, obs),
                                action)
  frag_members = np.asarray(member_returns(frag["obs"], frag["action"]))
  env_cfg = system.env.cfg
  out = {"benchmark": "partner_probe", "experiment": cfg.name, "checkpoint": restored.step,
         "run": run, "pairs": int(keep.sum()), "fragment_length": length,
         "fragment_speed": float(frag["obs"][..., SPEED_INDEX].mean()), "partners": {}}
  for i, (name, (noise, how)) in enumerate(PARTNERS.items()):
    roll = jax.jit(functools.partial(
        branches.rollout, system.agent, system.env, params, length=length, noise=noise,
        steer=steer_fn(system, params, reward_state, how),
        scored_after=system.scores_after))
    p = roll(jax.random.fold_in(k_partner, i), qpos, qvel)
    partner = {"obs": np.asarray(p.obs), "true_reward": np.asarray(p.true_reward)}
    partner_members = np.asarray(member_returns(p.obs, p.action))
    out["partners"][name] = score_pairs(frag, partner, frag_members, partner_members,
                                        env_cfg.healthy_z_min, env_cfg.healthy_angle_max)
    print(f"{name}: {json.dumps(out['partners'][name])}", file=sys.stderr, flush=True)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir")
  p.add_argument("--run", type=int, default=0, help="which run of a multi-seed directory")
  p.add_argument("--pairs", type=int, default=1024)
  p.add_argument("--steps", type=int, default=256, help="rollout steps to draw starts from")
  p.add_argument("--seed", type=int, default=7)
  args = p.parse_args(argv)
  return config_errors.print_json_or_refuse(
      "partner_probe", lambda: probe(args.run_dir, run=args.run, pairs=args.pairs,
                                     steps=args.steps, seed=args.seed),
      (checkpoint.CheckpointError,))


if __name__ == "__main__":
  sys.exit(main())
