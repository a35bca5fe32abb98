"""Environments: MJX Hopper and the task oracles that score it."""

from rlhp_jax.envs.hopper import EnvState, Hopper, HopperConfig, make

__all__ = ["EnvState", "Hopper", "HopperConfig", "make"]
