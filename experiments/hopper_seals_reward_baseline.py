"""A diagnostic arm for hopper_synthetic: PPO (same settings, budget and seeds) on seals' reward
instead of the task's, the reward that prices a step inside Gym's healthy range as cheaply as the
learned rewards do.

seals' Hopper pays forward progress on every step and +1 per healthy step, with no penalty, so a
healthy step is worth 1 m/s of speed (``benchmarks/reward_probe.py``'s price). The main job's task
(``hopper_synthetic.py``) pays nothing outside the range and charges 1 more: v + 2 at speed v, 3.6
m/s by the probe's fit on the main job's policies; the learned rewards price it at 0.1-1 m/s.
Run with ``benchmarks/arms.py --arms true``; session 38 (benchmarks/RESULTS.md) compares it with
``hopper_health_priced_baseline.py``, the same reward structure with the task's price.

Session 38, seeds 0-23 (2-core CPU): 16 of 24 meet issue 10's bar, 14 of 24 keep every evaluation
episode in Gym's range (the priced arm: 21 and 20; the main job's preference arm on the same
seeds: 15 and 14); it hops faster than the priced arm (2.61 against 2.42 m/s, IQM).
"""

import dataclasses
import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "hopper_synthetic.py"))["CONFIG"]

CONFIG = dataclasses.replace(
    _base, name="hopper_seals_reward_baseline", reward_source="true",
    env=dataclasses.replace(_base.env, forward_while_unhealthy=True, unhealthy_penalty=0.0))
