"""A diagnostic arm for hopper_synthetic: PPO on seals' reward structure (forward progress paid on
every step, +1 per healthy step) with a penalty of 2.6 per step outside Gym's healthy range, so
that a healthy step is worth 3.6 m/s of speed, what the main job's task prices it at. Against
``hopper_seals_reward_baseline.py`` (worth 1 m/s) only the price of health differs.

Run with ``benchmarks/arms.py --arms true``; results in benchmarks/RESULTS.md, session 38.

Session 38, seeds 0-23 (2-core CPU): 21 of 24 meet issue 10's bar, 20 of 24 keep every evaluation
episode in Gym's range; Gym-rules IQM 1.01 [0.98, 1.04] of PPO on the task's reward (22 and 20).
"""

import dataclasses
import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "hopper_synthetic.py"))["CONFIG"]

CONFIG = dataclasses.replace(
    _base, name="hopper_health_priced_baseline", reward_source="true",
    env=dataclasses.replace(_base.env, forward_while_unhealthy=True, unhealthy_penalty=2.6))
