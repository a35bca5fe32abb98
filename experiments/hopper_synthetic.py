"""Learning to hop forward from 700 synthetic preferences (exact teacher), fixed-horizon Hopper.

The README's main job: about 10 minutes on 2 CPU cores. The learned reward replaces the env
reward for PPO; the true return of the hop-forward oracle is reported, never trained on.
"""

from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.ppo import PPOConfig
from rlhp_jax.preferences import PreferenceConfig
from rlhp_jax.reward_model import RewardModelConfig
from rlhp_jax.teachers import TeacherConfig

CONFIG = ExperimentConfig(
    name="hopper_synthetic",
    reward_source="preferences",
    labels="synthetic",
    env=HopperConfig(mode="fixed_horizon", task="hop_forward", episode_length=1000, ctrl_cost=0.0,
                     unhealthy_penalty=10.0),
    ppo=PPOConfig(num_envs=256, unroll_length=64, num_epochs=5, num_minibatches=16,
                  learning_rate=3e-4, reward_scale=0.1),
    reward=RewardModelConfig(ensemble_size=3, hidden=(64, 64), steps_per_iteration=32,
                             batch_size=64, rater_noise=0.1),
    prefs=PreferenceConfig(total_labels=700, initial_fraction=0.25, pairs_per_iteration=32,
                           fragment_length=25, selection="disagreement", oversample=10,
                           schedule="paper", schedule_timescale=1e6),
    teacher=TeacherConfig(),
    run=RunConfig(total_env_steps=5_000_000, num_seeds=1, eval_every=500_000,
                  iterations_per_call=5),
)
