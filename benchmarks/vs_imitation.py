"""rlhp-jax's main job side by side with imitation 1.0.1's preference comparisons, on this
machine, one after the other, per seed. Prints one JSON object.

    python benchmarks/vs_imitation.py --imitation-python ../imitation-venv/bin/python
    python benchmarks/vs_imitation.py --imitation-python ../imitation-venv/bin/python --full

imitation runs in its own virtualenv (benchmarks/README.md says how to make it), as a subprocess
running ``benchmarks/imitation_side.py``: SB3 PPO with imitation's tuned seals_hopper settings,
700 synthetic labels, seals/Hopper-v1, evaluated (clock stopped) after every preference
iteration and every ``--imitation-eval-every`` PPO steps. rlhp-jax runs as
``python -m rlhp_jax.cli train experiments/hopper_synthetic.py --run.seed S ...`` (one seed per
process) and is read back from its run directory's ``metrics.jsonl``.

The default size is a smoke test that finishes in minutes on 2 CPU cores; ``--full`` runs both
sides at full size (imitation: the train_preference_comparisons script's 1e6 timesteps and 5
iterations; rlhp-jax: the experiment as configured).

Figures per seed and side (all seconds from the subprocess launch, so imports, set-up and, for
rlhp-jax, XLA compilation count, all of it: its persistent compile cache is off unless
``--ours-compile-cache DIR``; imitation's evaluation time is excluded; rlhp-jax's rows are
stamped when the evaluated policy existed, earlier in-line evaluations stay in its clock):
  * ``time_to_seals``: wall-clock to the first evaluation whose seals-style return (forward +
    1 per healthy step - ctrl cost, 1000 fixed steps; what imitation reports) reaches each of
    ``--thresholds`` (default 1000 1270 2214 3000); null if never reached;
  * ``final``: the last evaluation's seals-style return, Gym-rules return (Gym's reward until
    the first unhealthy step), healthy-step fraction and forward speed;
  * imitation's ``loop_s`` (``PreferenceComparisons.train`` alone) and ``total_s``;
  * ``ratios``: ``to_imitation_final``: rlhp-jax's time to imitation's final seals return over
    imitation's time to that same return (bar: <= 1/3; ``imitation_improved`` says whether
    imitation's final return beats its first evaluation, the initial policy's), and
    ``to_imitation_best``, the same for the best return imitation's curve reached, which stays
    meaningful where imitation's policy collapses late; ``ours_3000_over_imitation_loop``:
    rlhp-jax's time to 3000 over imitation's whole loop time (bar: <= 1).
rlhp-jax evaluates ``run.eval_episodes`` episodes per evaluation (their mean), imitation
``--imitation-eval-episodes`` (default 1); both deterministic policies, 1000 steps. At full
size both are evaluated about as often (rlhp-jax every 32,768 env steps: ``FULL_OURS``).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, ROOT)  # rlhp_jax.jsonl reads our metrics (the training runs in a subprocess)
THRESHOLDS = (1000.0, 1270.0, 2214.0, 3000.0)
FIGURES = ("seals_return", "gym_return", "healthy_fraction", "forward_speed", "task_return")
OUR_KEYS = {"seals_return": ("eval/seals_return",), "gym_return": ("eval/gym_return",),
            "healthy_fraction": ("eval/healthy_fraction",),
            "forward_speed": ("eval/forward_speed",),
            "task_return": ("eval/task_return", "eval/return")}
"""Our figure name -> the metrics.jsonl keys it may be stored under (first found wins)."""

SMALL_IMITATION = ["--total-timesteps", "30720", "--comparisons", "70", "--num-iterations", "2",
                   "--eval-every", "10240"]
SMALL_OURS = ["--run.total-env-steps", "163840", "--run.eval-every", "81920"]
FULL_OURS = ["--run.eval-every", "32768"]
"""At full size rlhp-jax is evaluated every 32,768 env steps (one jitted call of the main job),
about as often as imitation (every 20,480 PPO steps and after every preference iteration): a
time to a threshold is only as fine as the evaluations that find it, and the main job's own
131,072-step interval would add up to ~18 s to each of ours. The evaluations run on the spare
core and the training is the same computation whatever the interval."""


# -- pure parts (tested in tests/test_benchmarks.py) ------------------------------------------

def first_value(x):
  """A metric of one run: rlhp-jax writes per-run lists (one value per seed/run); one seed per
  process means element 0. Scalars pass through; None and NaN become None."""
  if isinstance(x, (list, tuple)):
    x = x[0] if x else None
  if x is None:
    return None
  x = float(x)
  return None if math.isnan(x) else x


def time_to_thresholds(points, thresholds, key: str = "seals_return") -> dict:
  """``points``: evaluations in time order, dicts with ``t`` and ``key``. Returns, per threshold
  (as a string key), the ``t`` of the first point whose ``key`` >= threshold, else None."""
  out = {}
  for thr in thresholds:
    hit = next((p["t"] for p in points if p.get(key) is not None and p[key] >= thr), None)
    out[_label(thr)] = hit
  return out


def _label(thr) -> str:
  return str(int(thr)) if float(thr).is_integer() else str(thr)


def read_metrics(path: str) -> list[dict]:
  """Rows of an rlhp-jax ``metrics.jsonl`` (``rlhp_jax.jsonl``: a torn last line is skipped)."""
  from rlhp_jax import jsonl
  return jsonl.read(path)


def our_curve(rows, launch_unix: float) -> list[dict]:
  """Evaluation rows of an rlhp-jax ``metrics.jsonl`` as curve points: ``t`` = the row's unix
  ``time`` (when the evaluated policy existed) minus the subprocess launch time, minus the
  seconds the run had spent evaluating in line before it (``eval_s``: a run whose layout
  leaves no device spare, such as the main job's envs split over 2 cores, evaluates between
  training steps), so our clock stops for evaluations as imitation's does; the figures of run
  0. The ``final`` row's ``time`` may be stamped after the final evaluation while its
  ``wall_s`` ends with training: its ``t`` is the driver's start (``time - wall_s`` of the
  other rows) plus its ``wall_s``."""
  starts = sorted(r["time"] - r["wall_s"] for r in rows
                  if not r.get("final") and "time" in r and "wall_s" in r)
  driver_start = starts[len(starts) // 2] if starts else None
  curve = []
  for row in rows:
    keys = {name: next((k for k in ks if k in row), None) for name, ks in OUR_KEYS.items()}
    if keys["seals_return"] is None and keys["gym_return"] is None:
      continue  # a training-only row
    if row.get("final") and driver_start is not None and "wall_s" in row:
      t = driver_start + row["wall_s"] - launch_unix
    else:
      t = row["time"] - launch_unix if "time" in row else None
    if t is not None:
      t -= row.get("eval_s", 0.0)
    point = {"t": t, "wall_s": row.get("wall_s"), "env_steps": row.get("env_steps")}
    for name, key in keys.items():
      point[name] = first_value(row[key]) if key is not None else None
    curve.append(point)
  # a background evaluation's row is written after later training rows: order by the moment
  # the evaluated policy existed
  return sorted(curve, key=lambda p: (p["env_steps"] or 0, p["t"] or 0.0))


def imitation_curve(result: dict, launch_unix: float) -> list[dict]:
  """Curve points of ``imitation_side.py``'s JSON: ``t`` = its evaluation-free ``time_s`` plus
  the latency between our launch and its first line (interpreter start)."""
  offset = result["started_unix"] - launch_unix
  return [{"t": p["time_s"] + offset, "loop_s": p.get("loop_s"), "env_steps": p["env_steps"],
           "agent_steps": p["agent_steps"], "iteration": p["iteration"],
           **{k: p[k] for k in FIGURES if k in p}} for p in result["curve"]]


def final_figures(curve) -> dict:
  last = curve[-1] if curve else {}
  return {k: last[k] for k in FIGURES if last.get(k) is not None}


def _ratio(a, b):
  return a / b if a is not None and b not in (None, 0) else None


def _time_to(curve, value):
  """Seconds to the first point of ``curve`` whose seals-style return reaches ``value``."""
  return None if value is None else time_to_thresholds(curve, [value])[_label(value)]


def compare_seed(seed: int, imitation: dict | None, ours: dict | None, thresholds) -> dict:
  """One seed's JSON block. ``imitation`` / ``ours``: dicts with ``curve`` (points as made by
  ``imitation_curve`` / ``our_curve``) and their side's extra figures."""
  out = {"seed": seed}
  for name, side in (("imitation", imitation), ("ours", ours)):
    if side is None:
      continue
    curve = side["curve"]
    out[name] = {"time_to_seals": time_to_thresholds(curve, thresholds),
                 "final": final_figures(curve),
                 **{k: v for k, v in side.items() if k != "curve"}, "curve": curve}
  if imitation is not None and ours is not None:
    target = out["imitation"]["final"].get("seals_return")
    theirs_t, ours_t = _time_to(imitation["curve"], target), _time_to(ours["curve"], target)
    ours_3000 = _time_to(ours["curve"], 3000.0)
    returns = [p["seals_return"] for p in imitation["curve"] if p.get("seals_return") is not None]
    best = max(returns) if returns else None
    best_theirs, best_ours = _time_to(imitation["curve"], best), _time_to(ours["curve"], best)
    out["ratios"] = {
        "to_imitation_final": {"seals_return": target, "ours_s": ours_t, "imitation_s": theirs_t,
                               "ours_over_imitation": _ratio(ours_t, theirs_t),
                               # False where imitation ends no better than its first evaluation
                               # (the initial policy): the ratio then times a start-up, not learning
                               "imitation_improved": (target is not None and bool(returns)
                                                      and target > returns[0])},
        "to_imitation_best": {"seals_return": best, "ours_s": best_ours,
                              "imitation_s": best_theirs,
                              "ours_over_imitation": _ratio(best_ours, best_theirs)},
        "ours_3000_over_imitation_loop": {
            "ours_s": ours_3000, "imitation_loop_s": imitation.get("loop_s"),
            "ratio": _ratio(ours_3000, imitation.get("loop_s"))},
    }
  return out


def summarize(seeds: list[dict]) -> dict:
  """The two targets over all seeds: our time to imitation's final return <= 1/3 of its time,
  and our time to 3000 <= imitation's whole loop (None where a side is missing)."""
  blocks = [s for s in seeds if "ratios" in s]
  if not blocks:
    return {}
  r1 = [s["ratios"]["to_imitation_final"]["ours_over_imitation"] for s in blocks]
  r2 = [s["ratios"]["ours_3000_over_imitation_loop"]["ratio"] for s in blocks]
  r_best = [s["ratios"]["to_imitation_best"]["ours_over_imitation"] for s in blocks]
  return {"ours_over_imitation_to_its_final": r1,
          "ours_over_imitation_to_its_best": r_best,
          "ours_3000_over_imitation_loop": r2,
          "bar_third_of_imitation_time": all(r is not None and r <= 1 / 3 for r in r1),
          "bar_3000_within_imitation_loop": all(r is not None and r <= 1 for r in r2)}


def assemble(args_dict: dict, seeds: list[dict], machine: dict) -> dict:
  return {"benchmark": "vs_imitation", "machine": machine, **args_dict, "seeds": seeds,
          "summary": summarize(seeds)}


# -- the two sides ----------------------------------------------------------------------------

def run_imitation(python: str, seed: int, extra: list[str]) -> dict:
  """imitation_side.py under imitation's interpreter; its JSON plus our launch time."""
  cmd = [python, os.path.join(HERE, "imitation_side.py"), "--seed", str(seed), *extra]
  print(f"vs_imitation: {' '.join(cmd)}", file=sys.stderr, flush=True)
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  env["TQDM_DISABLE"] = "1"
  load = os.getloadavg()[0]
  launch = time.time()
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=ROOT)
  if proc.returncode != 0:
    raise RuntimeError(f"imitation side failed (exit {proc.returncode}): {' '.join(cmd)}")
  result = json.loads(proc.stdout)
  return {"launch_unix": launch, "result": result,
          "load_avg_1min": [load, os.getloadavg()[0]]}


def imitation_block(run: dict) -> dict:
  r = run["result"]
  offset = r["started_unix"] - run["launch_unix"]
  return {"curve": imitation_curve(r, run["launch_unix"]),
          "loop_s": r["loop_s"], "total_s": r["total_s"] + offset,
          "eval_s_excluded": r["eval_s_excluded"], "env_steps": r["env_steps"],
          "agent_steps": r["agent_steps"], "labels": r["labels"],
          "env_steps_per_s_loop": r["env_steps_per_s_loop"],
          "versions": {k: r[k] for k in ("imitation", "stable_baselines3", "gymnasium", "torch")},
          "settings": r["settings"], "load_avg_1min": run.get("load_avg_1min")}


def run_ours(python: str, experiment: str, seed: int, extra: list[str],
             compile_cache: str = "off") -> dict:
  """One seed of an rlhp-jax experiment through the CLI; its metrics.jsonl read back.
  ``compile_cache`` is the CLI's ``RLHP_JAX_COMPILE_CACHE``: "off" (the default) compiles
  every program in every run, as on a fresh clone, so the times count a whole compile."""
  out_dir = tempfile.mkdtemp(prefix=f"rlhp-bench-s{seed}-")
  cmd = [python, "-m", "rlhp_jax.cli", "train", experiment, "--run.seed", str(seed),
         "--run.out-dir", out_dir, "--run.no-video", *extra]
  print(f"rlhp-jax: {' '.join(cmd)}", file=sys.stderr, flush=True)
  load = os.getloadavg()[0]
  launch = time.time()
  env = {**os.environ, "RLHP_JAX_COMPILE_CACHE": compile_cache}
  proc = subprocess.run(cmd, stdout=sys.stderr, stderr=None, cwd=ROOT, env=env)
  end = time.time()
  if proc.returncode != 0:
    raise RuntimeError(f"rlhp-jax side failed (exit {proc.returncode}): {' '.join(cmd)}")
  (run_dir,) = glob.glob(os.path.join(out_dir, "*"))
  rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  summary_path = os.path.join(run_dir, "summary.json")
  summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
  return {"curve": our_curve(rows, launch), "total_s": end - launch,
          "loop_wall_s": summary.get("wall_s"), "env_steps": summary.get("env_steps"),
          "labels": (summary.get("labels_per_run") or [None])[0], "run_dir": run_dir,
          "software": summary.get("software"),
          "command": cmd, "compile_cache": compile_cache,
          "load_avg_1min": [load, os.getloadavg()[0]]}


def machine() -> dict:
  """Where it ran; ``load_avg_1min`` per side (before, after) says how busy the cores were:
  these 2-core machines are shared, and times drift between hours."""
  return {"platform": platform.platform(), "cpus": os.cpu_count(),
          "python": platform.python_version()}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--imitation-python", default=None,
                 help="python of imitation's own virtualenv (required unless --sides ours)")
  p.add_argument("--full", action="store_true", help="full size on both sides")
  p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
  p.add_argument("--sides", nargs="*", choices=["imitation", "ours"],
                 default=["imitation", "ours"])
  p.add_argument("--thresholds", type=float, nargs="*", default=list(THRESHOLDS))
  p.add_argument("--experiment", default=os.path.join("experiments", "hopper_synthetic.py"))
  p.add_argument("--python", default=sys.executable, help="python of rlhp-jax's .venv")
  p.add_argument("--imitation-args", default="",
                 help="extra imitation_side.py flags, one string: --imitation-args='--parallel'")
  p.add_argument("--ours-args", default="",
                 help="extra rlhp-jax overrides, one string: --ours-args='--run.eval-every 250000'")
  p.add_argument("--ours-compile-cache", default="off", metavar="DIR",
                 help="rlhp-jax's RLHP_JAX_COMPILE_CACHE (default off: every run compiles "
                      "from scratch, as on a fresh clone; a folder: the second seed on loads "
                      "the first one's programs)")
  p.add_argument("--imitation-eval-every", type=int, default=None,
                 help="PPO steps between imitation's extra evaluations (default: its helper's)")
  p.add_argument("--imitation-eval-episodes", type=int, default=1)
  p.add_argument("--out", default=None, metavar="JSON",
                 help="also write the JSON here, rewritten after every seed, so a run stopped "
                      "midway keeps the seeds it finished")
  p.add_argument("--reuse-imitation", default=None, metavar="JSON",
                 help="take the imitation side from an earlier output of this script instead "
                      "of running it (times drift between hours: note it when quoting ratios)")
  args = p.parse_args(argv)
  if "imitation" in args.sides and not args.reuse_imitation and not args.imitation_python:
    p.error("--imitation-python is required to run the imitation side "
            "(or pass --sides ours, or --reuse-imitation JSON)")
  return args


def eval_action_of(experiment_path: str, ours_extra: list[str]) -> str:
  """The rule our run evaluates by (``run.eval_action``, after the overrides we pass), so that
  imitation's policy is evaluated by the same one."""
  from rlhp_jax import experiment
  cfg = experiment.override(experiment.load_experiment(experiment_path), ours_extra)
  return cfg.run.eval_action


def main(argv=None):
  args = parse_args(argv)
  ours_extra = list(FULL_OURS if args.full else SMALL_OURS) + args.ours_args.split()
  eval_action = eval_action_of(args.experiment, ours_extra)
  imit_extra = [] if args.full else list(SMALL_IMITATION)
  if args.imitation_eval_every is not None:
    imit_extra += ["--eval-every", str(args.imitation_eval_every)]
  imit_extra += ["--eval-episodes", str(args.imitation_eval_episodes),
                 "--eval-action", eval_action]
  imit_extra += args.imitation_args.split()
  reused = {}
  if args.reuse_imitation:
    with open(args.reuse_imitation) as f:
      reused = {s["seed"]: s["imitation"] for s in json.load(f)["seeds"] if "imitation" in s}
  settings = {"size": "full" if args.full else "small", "thresholds": args.thresholds,
              "imitation_python": args.imitation_python, "imitation_args": imit_extra,
              "experiment": args.experiment, "ours_args": ours_extra,
              "ours_compile_cache": args.ours_compile_cache, "eval_action": eval_action,
              "times": "seconds from each subprocess launch; imitation's evaluations excluded"}
  seeds = []
  for seed in args.seeds:
    imitation = ours = None
    if "imitation" in args.sides:
      if args.reuse_imitation:
        imitation = {k: v for k, v in reused[seed].items()
                     if k not in ("time_to_seals", "final")}
        imitation["reused_from"] = args.reuse_imitation
      else:
        imitation = imitation_block(run_imitation(args.imitation_python, seed, imit_extra))
    if "ours" in args.sides:
      ours = run_ours(args.python, args.experiment, seed, ours_extra, args.ours_compile_cache)
    seeds.append(compare_seed(seed, imitation, ours, args.thresholds))
    if args.out:
      save(args.out, assemble(settings, seeds, machine()))
  print(json.dumps(assemble(settings, seeds, machine()), indent=1))


def save(path: str, result: dict) -> None:
  """Writes ``result`` to ``path`` whole or not at all (temporary file, then rename)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, path)


if __name__ == "__main__":
  main()
