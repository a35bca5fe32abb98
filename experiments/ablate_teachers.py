"""B-Pref's six synthetic teachers x 3 seeds on fixed-horizon hop-forward Hopper: all 18 runs
vmapped in one compile. Prints a table and saves teachers.png with the true return per teacher.

Sized for CPU (64 envs per run, 1M env steps each); on a GPU raise --ppo.num-envs and
--run.total-env-steps.
"""

from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.ppo import PPOConfig
from rlhp_jax.preferences import PreferenceConfig
from rlhp_jax.reward_model import RewardModelConfig

CONFIG = ExperimentConfig(
    name="ablate_teachers",
    reward_source="preferences",
    labels="synthetic",
    teachers=("exact", "boltzmann", "mistake", "skip", "equal", "myopic"),
    env=HopperConfig(mode="fixed_horizon", task="hop_forward"),
    ppo=PPOConfig(num_envs=64, unroll_length=64, num_epochs=5, num_minibatches=8,
                  reward_scale=0.1),
    reward=RewardModelConfig(steps_per_iteration=32),
    prefs=PreferenceConfig(total_labels=500, pairs_per_iteration=16, fragment_length=25,
                           schedule_timescale=5e5),
    run=RunConfig(total_env_steps=1_000_000, num_seeds=3, eval_every=250_000,
                  iterations_per_call=10, video=False),
)
