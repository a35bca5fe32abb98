"""How good is a finished run's learned reward, and would other reward-model settings have done
better on the same labels? An offline probe, seconds to minutes on a CPU.

From a run directory (its config.json and newest checkpoint) it takes the preference buffer, the
reward ensemble the run trained and the final policy. It rolls the policy out (stochastic, as in
training, from the checkpoint's env states) for a test set the reward models never saw, and scores:

* ``online``: the reward the run itself handed PPO at the end;
* each ``--variant``: a fresh ensemble with the run's reward config plus the variant's
  ``--reward.field value`` overrides, trained for ``--iterations`` reward-model updates (the
  run's ``reward.steps_per_iteration`` SGD steps each, its L2 rule) on the run's whole buffer.

Scores per model (JSON on stdout):

* ``val_accuracy``: on the buffer's held-out labels (the run's validation split);
* ``step_corr``: Pearson correlation of the normalised per-step reward with the task's reward
  on the test set;
* ``pair_accuracy``: share of random test fragment pairs (the run's fragment length, pairs with
  different task returns) that the ensemble orders as the task's return does;
* ``healthy_price``: least squares of the per-step reward on [forward velocity, healthy, 1]:
  the healthy coefficient over the velocity coefficient, i.e. how many m/s of speed one step
  inside Gym's healthy range is worth. ``true_healthy_price`` is the same for the task's reward.
  A learned reward that prices health below the task does will let PPO trade the healthy range
  for speed.
* ``spread_healthy`` / ``spread_unhealthy``: the members' mean standard deviation of their
  normalised per-step rewards on test steps inside / outside the healthy range: where the
  ensemble is unsure. A reward that charged for spread (pessimism) would price health only as
  much more as the two differ.
* ``pessimistic_healthy_price``: ``healthy_price`` of the members' mean minus lambda times their
  spread, for each lambda of ``PESSIMISM_WEIGHTS`` (the reward ``reward.pessimism`` = lambda
  hands PPO).

  python benchmarks/reward_probe.py RUN_DIR [--variant NAME "--reward.l2-min 1e-5 ..."] \
      [--iterations 250] [--run I] [--online-only]

``--run I`` probes the I-th run of a multi-seed directory (an arm of ``benchmarks/arms.py``);
``--online-only`` skips the retrained variants.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from rlhp_jax import checkpoint, config_errors, core, experiment, ppo, reward_model  # noqa: E402
from rlhp_jax.envs import hopper  # noqa: E402

SPEED_INDEX = 5
"""The forward velocity's place in Hopper's observation (z, pitch, 3 joints, then qvel)."""


PESSIMISM_WEIGHTS = (0.5, 1.0)
"""lambda of the reward ``mean - lambda x spread`` whose healthy price is also reported (what
``reward.pessimism`` would hand PPO)."""


@dataclasses.dataclass
class TestSet:
  """On-policy transitions [T, B, ...] and random fragment pairs over them."""

  obs: np.ndarray          # [T, B, D] raw observations
  action: np.ndarray       # [T, B, A] applied (clipped) actions
  true_reward: np.ndarray  # [T, B]
  healthy: np.ndarray      # [T, B] float: the state after the step has Gym's healthy z, pitch
  starts: np.ndarray       # [N, 2] first step of each fragment
  envs: np.ndarray         # [N, 2] env of each fragment
  length: int

  def fragments(self, x: np.ndarray) -> np.ndarray:
    """x [T, B, ...] -> [N, 2, L, ...]."""
    t = self.starts[..., None] + np.arange(self.length)
    return x[t, self.envs[..., None]]


def make_test_set(system: core.RLHP, state: core.RLHPState, key: jax.Array, steps: int,
                  pairs: int) -> TestSet:
  """``steps`` steps of every env of one run's policy, stochastic, from its checkpointed env
  states (fragments may cross an episode reset: the task's return still orders them)."""
  k_roll, k_t, k_b = jax.random.split(key, 3)
  roll = jax.jit(lambda s, k: ppo.rollout(system.agent, system.env, s.ppo.params,
                                          s.ppo.env_state, k, steps)[1])
  tr = roll(state, k_roll)
  # Health of the state after each step (the one the task's reward looks at), from the
  # observation after the step before any reset: its height and (wrapped) pitch. Gym's bound
  # of 100 on the other coordinates is left out: the observation clips velocities at 10.
  env_cfg = system.env.cfg
  next_healthy = ((tr.next_obs[..., 0] > env_cfg.healthy_z_min)
                  & (jnp.abs(tr.next_obs[..., 1]) < env_cfg.healthy_angle_max))
  length = system.cfg.prefs.fragment_length
  batch = tr.obs.shape[1]
  return TestSet(obs=np.asarray(system.scored_obs(tr)),
                 action=np.asarray(hopper.applied_action(tr.action)),
                 true_reward=np.asarray(tr.true_reward),
                 healthy=np.asarray(next_healthy, np.float32),
                 starts=np.asarray(jax.random.randint(k_t, (pairs, 2), 0, steps - length)),
                 envs=np.asarray(jax.random.randint(k_b, (pairs, 2), 0, batch)),
                 length=length)


def healthy_price(reward: np.ndarray, speed: np.ndarray, healthy: np.ndarray) -> float:
  """Least squares reward ~ a * speed + b * healthy + c: b / a (m/s a healthy step is worth)."""
  x = np.stack([speed.ravel(), healthy.ravel(), np.ones(speed.size)], 1)
  a, b, _ = np.linalg.lstsq(x, reward.ravel().astype(np.float64), rcond=None)[0]
  return float(b / a) if a != 0 else float("nan")


def pessimistic_prices(mean: np.ndarray, spread: np.ndarray, speed: np.ndarray,
                       healthy: np.ndarray) -> dict:
  """``healthy_price`` of mean - lambda x spread per step, for each lambda of
  ``PESSIMISM_WEIGHTS``: {"0.5": price, "1.0": price}."""
  return {str(lam): healthy_price(mean - lam * spread, speed, healthy)
          for lam in PESSIMISM_WEIGHTS}


def score(step_reward: np.ndarray, fragment_returns: np.ndarray, test: TestSet) -> dict:
  """step_reward [T, B] a model's per-step reward on the test set; fragment_returns [N, 2] its
  returns of the test pairs. Pure numpy."""
  true = test.fragments(test.true_reward).sum(-1)                        # [N, 2]
  decided = true[:, 0] != true[:, 1]
  agree = (fragment_returns[:, 0] > fragment_returns[:, 1]) == (true[:, 0] > true[:, 1])
  r, t = step_reward.ravel() - step_reward.mean(), test.true_reward.ravel()
  t = t - t.mean()
  return {
      "step_corr": float(np.sum(r * t) / (np.sqrt(np.sum(r**2) * np.sum(t**2)) + 1e-12)),
      "pair_accuracy": float(agree[decided].mean()) if decided.any() else float("nan"),
      "healthy_price": healthy_price(step_reward, test.obs[..., SPEED_INDEX], test.healthy),
  }


def score_ensemble(ensemble: reward_model.RewardEnsemble, reward_state, test: TestSet) -> dict:
  """The ensemble's reward as PPO would see it (each member normalised over the test set,
  averaged) and its fragment returns (members' mean), scored."""
  inputs = lambda obs: ensemble.inputs(reward_state.obs_stats, jnp.asarray(obs))
  raw = ensemble.member_rewards(reward_state.params, inputs(test.obs), jnp.asarray(test.action))
  norm = reward_model.update_norm(reward_model.init_norm(raw.shape[0]), raw, 1.0)
  members = np.asarray(reward_model.normalize_members(norm, raw))
  frag = ensemble.fragment_returns(reward_state.params, inputs(test.fragments(test.obs)),
                                   jnp.asarray(test.fragments(test.action)))
  spread, healthy = members.std(0), test.healthy > 0.5
  return {**score(members.mean(0), np.asarray(frag.mean(0)), test),
          "pessimistic_healthy_price": pessimistic_prices(
              members.mean(0), spread, test.obs[..., SPEED_INDEX], test.healthy),
          "spread_healthy": float(spread[healthy].mean()) if healthy.any() else float("nan"),
          "spread_unhealthy": float(spread[~healthy].mean()) if (~healthy).any() else float("nan")}


def retrain(reward_cfg: reward_model.RewardModelConfig, buffer, obs_stats, iterations: int,
            key: jax.Array):
  """A fresh ensemble trained ``iterations`` times (``reward_model.train``) on the whole buffer,
  with new bootstrap weights for its member count. Returns (ensemble, state, last metrics)."""
  ensemble = reward_model.RewardEnsemble(reward_cfg, hopper.OBS_SIZE, hopper.ACTION_SIZE)
  k_init, k_boot, k_train = jax.random.split(key, 3)
  state = ensemble.init(k_init).replace(obs_stats=obs_stats)
  members = reward_cfg.ensemble_size
  weight = jax.random.poisson(k_boot, 1.0, (buffer.label.shape[0], members)).astype(jnp.float32)
  if not reward_cfg.bootstrap:
    weight = jnp.ones_like(weight)
  buffer = buffer.replace(weight=weight)
  train = jax.jit(lambda s, k: reward_model.train(ensemble, s, buffer, k))
  metrics = {}
  for k in jax.random.split(k_train, iterations):
    state, metrics = train(state, k)
  return ensemble, state, metrics


def probe(run_dir: str, variants: dict[str, list[str]], *, iterations: int, steps: int,
          pairs: int, seed: int = 0, run: int = 0) -> dict:
  restored = checkpoint.restore_run(run_dir)
  cfg = restored.config
  state = restored.one(run)     # one run of the stack
  reward_cfgs = {name: experiment.override(cfg, o).reward for name, o in variants.items()}
  system = core.RLHP(cfg)
  key_test, key_train = jax.random.split(jax.random.PRNGKey(seed))
  test = make_test_set(system, state, key_test, steps, pairs)
  buffer = state.buffer
  out = {"benchmark": "reward_probe", "experiment": cfg.name, "checkpoint": restored.step,
         "run": run,
         "labels": int(buffer.count), "test_steps": int(test.true_reward.size),
         "test_pairs": pairs, "test_healthy_fraction": float(test.healthy.mean()),
         "true_healthy_price": healthy_price(test.true_reward, test.obs[..., SPEED_INDEX],
                                             test.healthy),
         "iterations": iterations, "models": {}}
  online = reward_model.evaluate(system.ensemble, state.reward.params, buffer,
                                 obs_stats=state.reward.obs_stats)
  out["models"]["online"] = {"val_accuracy": float(online["reward/val_accuracy"]),
                             **score_ensemble(system.ensemble, state.reward, test)}
  for name, overrides in variants.items():
    t0 = time.perf_counter()
    ensemble, reward_state, metrics = retrain(reward_cfgs[name], buffer, state.reward.obs_stats,
                                              iterations, key_train)
    out["models"][name] = {"overrides": " ".join(overrides),
                           "val_accuracy": float(metrics["reward/val_accuracy"]),
                           **score_ensemble(ensemble, reward_state, test),
                           "l2": np.asarray(metrics["reward/l2"]).tolist(),
                           "train_s": time.perf_counter() - t0}
    print(f"{name}: {json.dumps(out['models'][name])}", file=sys.stderr, flush=True)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir")
  p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"),
                 default=None, help='e.g. l2_fixed "--reward.l2-min 1e-5 --reward.l2-init 1e-5 '
                                    '--reward.l2-max 1e-5" (repeatable; default: as_run, the '
                                    "run's own reward config)")
  p.add_argument("--iterations", type=int, default=250,
                 help="reward-model updates per variant (the main job makes about 250)")
  p.add_argument("--steps", type=int, default=1024, help="test rollout length per env")
  p.add_argument("--pairs", type=int, default=4000, help="random test fragment pairs")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--run", type=int, default=0,
                 help="which run of a multi-seed run directory (an arm's seed), default 0")
  p.add_argument("--online-only", action="store_true",
                 help="score only the reward the run trained; no retrained variants")
  args = p.parse_args(argv)
  variants = ({} if args.online_only else
              {name: shlex.split(o) for name, o in (args.variant or [("as_run", "")])})
  return config_errors.print_json_or_refuse(
      "reward_probe", lambda: probe(args.run_dir, variants, iterations=args.iterations,
                                    steps=args.steps, pairs=args.pairs, seed=args.seed,
                                    run=args.run),
      (checkpoint.CheckpointError,))


if __name__ == "__main__":
  sys.exit(main())
