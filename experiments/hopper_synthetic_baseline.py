"""The baseline for hopper_synthetic: the same env, PPO settings, budget and seeds, trained on
the task's own reward instead of preferences (the reference arm of benchmarks/arms.py)."""

import dataclasses
import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "hopper_synthetic.py"))["CONFIG"]

CONFIG = dataclasses.replace(_base, name="hopper_synthetic_baseline", reward_source="true")
