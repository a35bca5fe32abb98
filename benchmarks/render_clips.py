"""Clip rendering throughput: pairs of fragments -> two mp4 files each, with the CPU MuJoCo
renderer in parallel worker processes (what the crowd and human gatherers do per batch).
Prints one JSON object.

    python benchmarks/render_clips.py                    # 8 pairs of 150-step clips, 320x240
    python benchmarks/render_clips.py --pairs 100 --steps 150 --width 480 --height 360

Figures: seconds for one pair on its own (the target: a pair of 150-step clips in < 10 s,
process start-up included), clips/s over a batch, bytes per clip, and the GL backend used.
The poses are a scripted hop-and-flip motion (rendering cost does not depend on the policy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlhp_jax import clips, render  # noqa: E402

DT = 0.008  # env step of the default Hopper (4 x 0.002 s)


def scripted_pairs(num_pairs: int, steps: int, seed: int = 0):
  """qpos [P, 2, T, 6]: moving forward, bobbing, tumbling backwards at random rates."""
  rng = np.random.default_rng(seed)
  t = np.arange(steps) * DT
  qpos = np.zeros((num_pairs, 2, steps, 6))
  speed = rng.uniform(0, 2, (num_pairs, 2, 1))
  spin = rng.uniform(-6, 0, (num_pairs, 2, 1))
  qpos[..., 0] = speed * t
  qpos[..., 1] = 1.25 + 0.2 * np.abs(np.sin(6 * t))
  qpos[..., 2] = spin * t
  qpos[..., 3:] = 0.3 * np.sin(8 * t + rng.uniform(0, 6, (num_pairs, 2, 3, 1))).swapaxes(-1, -2)
  # what ``clips.render_asked`` reads of a query
  return types.SimpleNamespace(pairs=types.SimpleNamespace(qpos=qpos),
                               mask=np.ones(num_pairs, bool))


def timed(query, iteration, out_dir, cfg) -> float:
  t0 = time.perf_counter()
  clips.render_asked(query, iteration, out_dir, cfg, DT)
  return time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--pairs", type=int, default=8)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--width", type=int, default=320)
  parser.add_argument("--height", type=int, default=240)
  parser.add_argument("--fps", type=float, default=30.0)
  parser.add_argument("--workers", type=int, default=0, help="0: all cores")
  args = parser.parse_args()
  cfg = render.ClipConfig(width=args.width, height=args.height, fps=args.fps,
                          workers=args.workers)
  out = tempfile.mkdtemp(prefix="rlhp-render-bench-")
  try:
    backend = render.gl_backend()
    one = timed(scripted_pairs(1, args.steps, seed=1), 0, os.path.join(out, "one"), cfg)
    batch = scripted_pairs(args.pairs, args.steps, seed=2)
    seconds = timed(batch, 1, os.path.join(out, "batch"), cfg)
    sizes = [os.path.getsize(os.path.join(out, "batch", f))
             for f in os.listdir(os.path.join(out, "batch"))]
  finally:
    shutil.rmtree(out, ignore_errors=True)
  stride = cfg.stride(DT)
  print(json.dumps({
      "benchmark": "render_clips", "gl_backend": backend, "cpu_count": os.cpu_count(),
      "machine": platform.processor() or platform.machine(),
      "clip": {"env_steps": args.steps, "frames": len(range(0, args.steps, stride)),
               "fps": 1.0 / (DT * stride), "width": args.width, "height": args.height},
      "workers": args.workers or min(2 * args.pairs, os.cpu_count() or 1),
      "one_pair_s": round(one, 3),
      "batch_pairs": args.pairs, "batch_s": round(seconds, 3),
      "clips_per_s": round(2 * args.pairs / seconds, 3),
      "bytes_per_clip_mean": int(np.mean(sizes)), "bytes_per_clip_max": int(np.max(sizes)),
  }, indent=2))


if __name__ == "__main__":
  main()
