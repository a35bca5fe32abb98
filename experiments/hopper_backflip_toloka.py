"""Backflips from crowd preferences on Toloka: the seed post's run, as a config.

Fixed-horizon Hopper on the backflip task; fragments of 150 env steps (1.2 s clips), up to 100
comparisons per iteration and 9000 in all (a quarter from the initial random policy), overlap 3,
majority vote. Clips go to an S3 bucket and reach workers as presigned URLs.

To go live you need only the secrets (environment) and three ids:

    export TOLOKA_TOKEN=...                     # Toloka: Profile -> Integrations
    export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
    rlhp-jax toloka setup experiments/hopper_backflip_toloka.py --storage.bucket MY_BUCKET
    rlhp-jax train experiments/hopper_backflip_toloka.py --storage.bucket MY_BUCKET \\
        --toloka.base-pool-id ID --toloka.project-id ID --toloka.training-pool-id ID

Every answer is stored in ``<run>/labels/labels.jsonl`` before it is used; ``rlhp-jax train
--resume RUN_DIR`` re-attaches to an open pool instead of paying for it twice.
"""

from rlhp_jax.crowd.config import StorageConfig, TolokaConfig
from rlhp_jax.envs.hopper import HopperConfig
from rlhp_jax.experiment import ExperimentConfig, RunConfig
from rlhp_jax.ppo import PPOConfig
from rlhp_jax.preferences import PreferenceConfig
from rlhp_jax.render import ClipConfig
from rlhp_jax.reward_model import RewardModelConfig

CONFIG = ExperimentConfig(
    name="hopper_backflip_toloka",
    reward_source="preferences",
    labels="toloka",
    env=HopperConfig(mode="fixed_horizon", task="backflip", episode_length=1000),
    ppo=PPOConfig(num_envs=256, unroll_length=160, num_epochs=5, num_minibatches=16,
                  learning_rate=3e-4, reward_scale=0.1, entropy_cost=1e-3),
    reward=RewardModelConfig(ensemble_size=3, steps_per_iteration=64),
    prefs=PreferenceConfig(total_labels=9000, initial_fraction=0.25, pairs_per_iteration=100,
                           fragment_length=150, selection="disagreement", oversample=10,
                           schedule_timescale=2e6),
    clips=ClipConfig(width=320, height=240, fps=30.0),
    storage=StorageConfig(kind="s3", bucket="", prefix="rlhp-jax",
                          endpoint_url=""),
    toloka=TolokaConfig(base_pool_id="", project_id="", training_pool_id="", overlap=3,
                        tasks_per_page=5, reward_per_page=0.01, aggregator="majority_vote",
                        poll_interval_s=60.0),
    run=RunConfig(total_env_steps=20_000_000, num_seeds=1, eval_every=1_000_000),
)
