"""What did a finished run's labels say about the healthy range? An offline audit, seconds on a CPU.

From a run directory (its config.json and newest checkpoint) it reads the preference buffer
and sorts the labelled pairs, in the order they were asked, by what their fragments show of
Gym's healthy range (z > env.healthy_z_min, |pitch| < env.healthy_angle_max, judged on the
observed state at each step of a fragment):

* ``ties``: labels of 1/2 (both fragments scored alike by the teacher);
* ``both_fallen``: pairs both of whose fragments are outside the range at every step;
* ``both_healthy``: pairs both of whose fragments are inside it at every step (the label can
  only be about speed);
* ``exit_vs_healthy``: one fragment wholly inside, the other partly outside (a brief exit, not
  a fallen hopper): the pairs that can teach the price of leaving the range.
* ``same_start``: pairs whose two fragments start in one state (a fragment and its branch,
  ``prefs.branch_share``), counted beside the kinds above.

For the ``exit_vs_healthy`` pairs it reports how often the teacher preferred the healthy
fragment, the mean number of steps the other spent outside, and how much faster (mean forward
velocity, m/s) the exiting fragment was. If exiting fragments are rarely faster, those labels
are satisfied by any reward that prices a step outside above a small fraction of a m/s: they
say that an exit is bad, not how bad (what ``benchmarks/reward_probe.py``'s healthy_price
measures).

  python benchmarks/label_audit.py RUN_DIR [--bins 4] [--run I]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import numpy as np  # noqa: E402

from rlhp_jax import checkpoint, config_errors  # noqa: E402

HEIGHT, PITCH, SPEED = 0, 1, 5
"""Places in Hopper's observation: torso height, torso pitch, forward velocity."""


def pair_kinds(obs: np.ndarray, z_min: float, angle_max: float) -> dict[str, np.ndarray]:
  """obs [N, 2, L, D] labelled fragment pairs -> boolean masks [N] per kind, and the steps
  outside the range per fragment [N, 2]."""
  healthy = (obs[..., HEIGHT] > z_min) & (np.abs(obs[..., PITCH]) < angle_max)   # [N, 2, L]
  outside = (~healthy).sum(-1)                                                    # [N, 2]
  length = obs.shape[2]
  fallen = outside == length
  return {
      "outside": outside,
      "both_fallen": fallen.all(1),
      "both_healthy": (outside == 0).all(1),
      "exit_vs_healthy": ((outside == 0).any(1) & (outside > 0).any(1) & ~fallen.any(1)),
      "same_start": np.all(obs[:, 0, 0] == obs[:, 1, 0], axis=-1),
  }


def audit(obs: np.ndarray, label: np.ndarray, z_min: float, angle_max: float,
          bins: int = 4) -> dict:
  """obs [N, 2, L, D], label [N] = P(first fragment preferred), in the order asked."""
  n = label.shape[0]
  kinds = pair_kinds(obs, z_min, angle_max)
  outside, ex = kinds["outside"], kinds["exit_vs_healthy"]
  healthy_side = np.where(outside[:, 0] == 0, 0, 1)              # the wholly healthy fragment
  rows = np.arange(n)
  preferred_healthy = np.where(healthy_side == 0, label, 1.0 - label)
  speed = obs[..., SPEED].mean(-1)                               # [N, 2]
  faster = speed[rows, 1 - healthy_side] - speed[rows, healthy_side]

  def counts(sel):
    return {"labels": int(sel.sum()), "ties": int((label[sel] == 0.5).sum()),
            **{k: int(kinds[k][sel].sum()) for k in ("both_fallen", "both_healthy",
                                                      "exit_vs_healthy", "same_start")}}

  edges = np.linspace(0, n, bins + 1).round().astype(int)
  out = {"labels": n, "fragment_length": int(obs.shape[2]), **counts(rows >= 0),
         "by_order_asked": [{"from": int(a), "to": int(b), **counts((rows >= a) & (rows < b))}
                            for a, b in zip(edges[:-1], edges[1:])]}
  if ex.any():
    out["exit_vs_healthy_pairs"] = {
        "teacher_preferred_healthy": float(preferred_healthy[ex].mean()),
        "steps_outside_mean": float(outside[rows, 1 - healthy_side][ex].mean()),
        "exit_faster_by_mean_m_per_s": float(faster[ex].mean()),
        "exit_faster_share": float((faster[ex] > 0).mean()),
    }
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dir")
  p.add_argument("--bins", type=int, default=4, help="slices of the labels in the order asked")
  p.add_argument("--run", type=int, default=0,
                 help="which run of a multi-seed run directory (an arm's seed), default 0")
  args = p.parse_args(argv)
  if args.bins < 1:
    print("label_audit: --bins must be at least 1", file=sys.stderr)
    return 2
  try:
    restored = checkpoint.restore_run(args.run_dir)
  except (checkpoint.CheckpointError, config_errors.ConfigError) as e:
    print(f"label_audit: {e}", file=sys.stderr)
    return 2
  runs = restored.state.buffer.count.shape[0]
  if not 0 <= args.run < runs:
    print(f"label_audit: --run must be in 0..{runs - 1} (the run directory holds {runs} runs), "
          f"got {args.run}", file=sys.stderr)
    return 2
  buf = jax.tree.map(lambda x: np.asarray(x[args.run]), restored.state.buffer)
  n = int(buf.count)
  env = restored.config.env
  result = {"benchmark": "label_audit", "experiment": restored.config.name,
            "checkpoint": restored.step, "run": args.run,
            **audit(buf.obs[:n], buf.label[:n], env.healthy_z_min, env.healthy_angle_max,
                    args.bins)}
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
