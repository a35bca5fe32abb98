"""rlhp-jax: reinforcement learning from human preferences on MJX Hopper."""
