"""Teaching Hopper to hop forward from your own judgements: 300 pairs on a local web page.

``rlhp-jax train experiments/hopper_human.py`` prints a link (``judge clips at
http://127.0.0.1:8765/?token=...``); open it, watch the two looping clips and press 1 (left
better), 2 (right), 3 (equal) or 4 (can't tell). Training waits for each batch of at most 10
pairs. Fragments are 120 env steps (about a second, looped) so a person can see hops; the
hop-forward oracle is only reported (eval return), never trained on.
"""

from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.human.config import HumanConfig
from rlhp_jax.ppo import PPOConfig
from rlhp_jax.preferences import PreferenceConfig
from rlhp_jax.render import ClipConfig
from rlhp_jax.reward_model import RewardModelConfig
from rlhp_jax.teachers import TeacherConfig

CONFIG = ExperimentConfig(
    name="hopper_human",
    reward_source="preferences",
    labels="human",
    env=HopperConfig(mode="fixed_horizon", task="hop_forward", episode_length=1000),
    ppo=PPOConfig(num_envs=128, unroll_length=128, num_epochs=5, num_minibatches=16,
                  learning_rate=3e-4, reward_scale=0.1),
    reward=RewardModelConfig(ensemble_size=3, hidden=(64, 64), steps_per_iteration=32,
                             batch_size=64, rater_noise=0.1),
    prefs=PreferenceConfig(total_labels=300, initial_fraction=0.25, pairs_per_iteration=10,
                           fragment_length=120, selection="disagreement", oversample=10,
                           schedule="paper", schedule_timescale=1e6),
    teacher=TeacherConfig(),
    run=RunConfig(total_env_steps=5_000_000, num_seeds=1, eval_every=500_000,
                  iterations_per_call=1),
    clips=ClipConfig(width=320, height=240, fps=30.0, camera="side"),
    human=HumanConfig(host="127.0.0.1", port=8765, batch_timeout_s=0.0),
)
