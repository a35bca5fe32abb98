"""PPO on gym-style Hopper with the true (Gym) reward: the foundation's bar.

Target: mean true return >= 2000 (deterministic policy, 10 episodes) within 5M env steps on a
2-core CPU.
"""

from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.ppo import PPOConfig

CONFIG = ExperimentConfig(
    name="hopper_ppo_true_reward",
    reward_source="true",
    env=HopperConfig(mode="gym", task="hop_forward"),
    ppo=PPOConfig(num_envs=256, unroll_length=64, num_epochs=5, num_minibatches=16,
                  learning_rate=3e-4, reward_scale=0.1),
    run=RunConfig(total_env_steps=5_000_000, eval_every=500_000, iterations_per_call=5),
)
