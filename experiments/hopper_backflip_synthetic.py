"""Backflips from synthetic preferences: the exact teacher judges fragment pairs by the backflip
oracle (rlhp_jax.envs.tasks.backflip: backward pitch rate while airborne with the centre of mass
high, jump height, staying up).

The summary counts whole backward turns (``flips_per_episode_per_run``) and turns that end on the
foot (``landed_flips_per_episode_per_run``) per evaluation episode; ``policy_frames.png`` shows
the flip. Sized for a GPU (about 10M env steps); on the 2-core CPU, --run.total-env-steps 8000000
takes 12 minutes. Session 3 measured 4.6 backward turns per episode, 3.0 of them landed; since
session 4's method changes it does not flip (session 6: 0 turns, task return 971; with
standardised reward inputs 0 turns, 1234). Session 7: session 3's commit, run again, still
flips (4.5 turns, 1.3 landed); this config with random pair selection 0.3 turns, with the reward
nets fed raw actions and lock-step starts (patched, not kept) 1.5. Session 14 (current code,
inverse-CDF sampling, one seed, 8 M steps, 10 min 18 s): 4.1 turns, 0.7 landed, task return
3690. See benchmarks/RESULTS.md.
"""

from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.ppo import PPOConfig
from rlhp_jax.preferences import PreferenceConfig
from rlhp_jax.reward_model import RewardModelConfig
from rlhp_jax.teachers import TeacherConfig

CONFIG = ExperimentConfig(
    name="hopper_backflip_synthetic",
    reward_source="preferences",
    env=HopperConfig(mode="fixed_horizon", task="backflip", episode_length=1000),
    ppo=PPOConfig(num_envs=512, unroll_length=64, num_epochs=5, num_minibatches=16,
                  learning_rate=3e-4, reward_scale=0.1, entropy_cost=1e-3),
    # Per-batch reward normalisation and the old L2 steps (x2, floor 1e-8): with the running
    # normalisation and the smooth L2 rule this run made no flip in 8 M steps (task return 916);
    # with these, 1.1 backward turns per episode, 0.4 landed (one seed each, session 4).
    # Raw observations: standardised inputs (the main job's fix) made no flip here (task return
    # 1234, 0 turns in 8 M steps, session 6), so this task keeps the raw ones.
    reward=RewardModelConfig(ensemble_size=3, steps_per_iteration=32, normalization_rate=1.0,
                             l2_factor=2.0, l2_min=1e-8, normalize_inputs=False),
    prefs=PreferenceConfig(total_labels=1400, pairs_per_iteration=32, fragment_length=50,
                           schedule_timescale=2e6),
    teacher=TeacherConfig(),
    run=RunConfig(total_env_steps=10_000_000, num_seeds=1, eval_every=1_000_000,
                  iterations_per_call=5),
)
