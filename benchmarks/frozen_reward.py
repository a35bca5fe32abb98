"""Is a failed seed's fault in what its learned reward says, or in the path PPO took while the
reward was still being learned? Retrain PPO from scratch on each finished run's final reward,
frozen, and see whether the new policy passes or fails the main job's bar as the run did.

    python benchmarks/frozen_reward.py RUN_DIR [RUN_DIR ...] [--ppo-seeds 1] [--out DIR]

For every run in the named directories (single runs of the main job, or the seeds of an
``arms.py`` arm), it takes the reward ensemble of the newest checkpoint (members' parameters and
the observation statistics their inputs are standardised by) and trains a fresh PPO agent on it
for the run's own RL budget (its env steps less the frozen initial-label iterations), with the
run's PPO settings and the learned reward's running normalisation started afresh, exactly as
the run hands the reward to PPO but with no new labels and no reward updates. PPO seed 0 starts
from the source run's own initial key (the same initial policy and env starts); further
``--ppo-seeds`` fold the seed into fresh keys. All retrains are vmapped in one compile and laid
out over the host devices as ``arms.py`` lays out seeds.

Every retrain is evaluated as the run was (``run.eval_every``, ``run.eval_episodes`` deterministic
episodes of ``run.eval_episode_length`` steps, the run's evaluation keys and action rule), and
scored against the main job's bar (``arms.UPRIGHT_BAR``). The JSON (stdout, and
``frozen_reward.json`` in ``--out``) has per run: the source run's final scores and verdict, each
retrain's final scores and verdict, and the share of its last four evaluations meeting the bar;
then the 2 x 2 table of source verdict against retrain verdict.

Reading it: if the rewards of failed runs give passing policies when frozen, the failure came
from the path (the reward PPO chased while labels arrived); if the verdict follows the reward,
what the labels taught is the fault; if it changes with the PPO seed alone, PPO's own spread is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # arms.py beside it
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from arms import SCORES, UPRIGHT_BAR  # noqa: E402
from rlhp_jax import checkpoint, compile_cache, config_errors, core, summary  # noqa: E402
from rlhp_jax.layout import Layout  # noqa: E402

log = logging.getLogger("frozen_reward")
LAST_EVALS = 4
"""Evaluations at the end of a retrain whose share meeting the bar is reported (a policy's
verdict can flip from one evaluation to the next)."""


def passes(scores: dict) -> bool:
  """The main job's bar on one run's final scores (``UPRIGHT_BAR``)."""
  return all(scores[name] >= bar for name, bar in UPRIGHT_BAR.items())


def scores_of(row: dict, i: int) -> dict:
  """Run ``i``'s bar scores from an evaluation row (``summary.eval_row``)."""
  return {"gym_return": float(row["eval/gym_return"][i]),
          "seals_return": float(row["eval/seals_return"][i]),
          "healthy_fraction_worst_episode": float(row["eval/healthy_fraction_min"][i]),
          "healthy_fraction": float(row["eval/healthy_fraction"][i]),
          "gym_length_worst_episode": int(row["eval/gym_length_min"][i])}


def source_scores(run_dir: str, i: int) -> dict | None:
  """The source run's final scores for its ``i``-th run (its summary.json, by ``arms.SCORES``),
  None without one."""
  path = os.path.join(run_dir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    s = json.load(f)
  return {name: s[key][i] for name, key in SCORES.items() if key in s}


def same_shapes(a, b) -> bool:
  """Runs can share one compile if their env, PPO and reward networks agree."""
  return (a.env == b.env and a.ppo == b.ppo and a.reward.hidden == b.reward.hidden
          and a.reward.ensemble_size == b.reward.ensemble_size
          and a.reward.normalization_rate == b.reward.normalization_rate
          and a.reward.normalize_inputs == b.reward.normalize_inputs
          and a.num_iterations == b.num_iterations
          and a.warmup_iterations == b.warmup_iterations and a.run.eval_every == b.run.eval_every
          and a.run.eval_episode_length == b.run.eval_episode_length
          and a.run.eval_episodes == b.run.eval_episodes and a.run.eval_action == b.run.eval_action)


def load_sources(run_dirs, ppo_seeds: int):
  """The retrains' initial states stacked [R, ...], their evaluation keys [R, 2], the shared
  config and one description per retrain. Host effects: reads each run's checkpoint."""
  cfg, system, states, eval_keys, described = None, None, [], [], []
  for run_dir in run_dirs:
    restored = checkpoint.restore_run(run_dir)
    if cfg is None:
      cfg = restored.config
      config_errors.require(cfg.reward_source == "preferences", run_dir,
                            "was not trained on preferences: it has no learned reward to freeze")
      system = core.RLHP(cfg)
      init = jax.jit(system.init)
    config_errors.require(same_shapes(cfg, restored.config), run_dir,
                          f"its env, PPO or reward-net settings differ from {run_dirs[0]}'s; "
                          "retrain runs of one experiment together")
    run_cfg = restored.config
    n = int(restored.state.iteration.shape[0])
    keys = core.run_keys(run_cfg, max(1, len(run_cfg.teachers)))
    ev_keys = core.eval_keys(run_cfg, n)
    for i in range(n):
      one = restored.one(i)
      seed = run_cfg.run.seed + i % run_cfg.run.num_seeds
      for j in range(ppo_seeds):
        key = keys[i] if j == 0 else jax.random.fold_in(keys[i], 7919 + j)
        fresh = init(key)
        states.append(fresh.replace(reward=one.reward))
        eval_keys.append(ev_keys[i])
        described.append({"run_dir": run_dir, "run": i, "seed": seed, "ppo_seed": j,
                          "source": source_scores(run_dir, i)})
  stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *states)
  return cfg, system, stacked, np.stack([np.asarray(k) for k in eval_keys]), described


def frozen_iteration(system: core.RLHP, state: core.RLHPState) -> core.RLHPState:
  """One PPO iteration (``prefs.rollouts_per_iteration`` batches) on the state's reward
  ensemble, which is never updated (one run)."""
  new_ppo, _, _, (_, norm, _) = system.ppo_phase(
      state.ppo, system.learned_reward,
      (state.reward, state.reward_norm, jnp.zeros((), jnp.float32)))
  return state.replace(ppo=new_ppo, reward_norm=norm, iteration=state.iteration + 1)


def retrain(run_dirs, ppo_seeds: int = 1, total_iterations: int | None = None) -> dict:
  cfg, system, state, eval_keys, described = load_sources(run_dirs, ppo_seeds)
  n = len(described)
  rl_iterations = total_iterations or system.num_iterations - system.warmup_iterations
  config_errors.require(rl_iterations >= 1, "--total-iterations", "must be >= 1")
  per_eval = min(rl_iterations, max(1, round(cfg.run.eval_every / system.iteration_env_steps)))
  layout = Layout.choose(n, cfg.ppo.num_envs, jax.devices())
  st = layout.state(core.env_batched(state))
  pr = layout.per_run
  step = layout.jit(jax.vmap(lambda s: frozen_iteration(system, s)), (st,), st)
  evaluate = layout.jit(jax.vmap(system.evaluate), (st, pr), pr)
  state = layout.put(state, st)
  eval_keys = layout.put(jnp.asarray(eval_keys), pr)
  log.info(f"{n} retrain(s) of {len(run_dirs)} run dir(s) x {rl_iterations} iterations x "
           f"{system.iteration_env_steps} env steps{layout.describe()}; compiling...")
  t0, rows = time.perf_counter(), []
  for done in range(1, rl_iterations + 1):
    state = step(state)
    if done % per_eval and done < rl_iterations:
      continue
    row = summary.eval_row(jax.device_get(evaluate(state, eval_keys)))
    rows.append({"env_steps": done * system.iteration_env_steps,
                 "wall_s": time.perf_counter() - t0,
                 "scores": [scores_of(row, i) for i in range(n)]})
    gym = np.asarray(row["eval/gym_return"])
    log.info(f"{done * system.iteration_env_steps:>9,d} env steps, {rows[-1]['wall_s']:6.0f} s:"
             f" Gym-rules per retrain {np.round(gym).astype(int).tolist()}")
  out = []
  for i, d in enumerate(described):
    final = rows[-1]["scores"][i]
    tail = [r["scores"][i] for r in rows[-LAST_EVALS:]]
    out.append({**d, "source_passes": None if d["source"] is None else passes(d["source"]),
                "retrain": final, "retrain_passes": passes(final),
                "retrain_last_evals_passing": sum(passes(s) for s in tail) / len(tail),
                "retrain_gym_curve": [round(r["scores"][i]["gym_return"], 1) for r in rows]})
  table = {f"source {'pass' if a else 'fail'}, retrain {'pass' if b else 'fail'}":
           sum(1 for r in out if r["source_passes"] is a and r["retrain_passes"] is b)
           for a in (True, False) for b in (True, False)}
  return {"benchmark": "frozen_reward", "bar": UPRIGHT_BAR, "ppo_seeds": ppo_seeds,
          "rl_env_steps": rl_iterations * system.iteration_env_steps,
          "eval_env_steps": [r["env_steps"] for r in rows], "wall_s": time.perf_counter() - t0,
          "table": table, "runs": out}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("run_dirs", nargs="+")
  ap.add_argument("--ppo-seeds", type=int, default=1)
  ap.add_argument("--total-iterations", type=int, default=None,
                  help="RL iterations per retrain (default: the source runs' own)")
  ap.add_argument("--out", default=None, help="folder for frozen_reward.json")
  args = ap.parse_args(argv)
  if not log.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
  log.setLevel(logging.INFO)   # this script's progress only, not every library's INFO lines

  def compute():
    config_errors.require(args.ppo_seeds >= 1, "--ppo-seeds", "must be >= 1")
    for d in args.run_dirs:
      config_errors.require(os.path.isdir(d), d, "is not a run directory")
    compile_cache.enable()
    result = retrain(args.run_dirs, args.ppo_seeds, args.total_iterations)
    if args.out:
      os.makedirs(args.out, exist_ok=True)
      with open(os.path.join(args.out, "frozen_reward.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result

  return config_errors.print_json_or_refuse("frozen_reward", compute,
                                            (checkpoint.CheckpointError,))


if __name__ == "__main__":
  sys.exit(main())
