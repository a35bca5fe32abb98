"""The benchmark scripts run at a tiny size and print the JSON their docstrings promise."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(__file__))


def run_script(name, *args):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout)


def test_env_throughput_splits_the_batch_over_host_devices():
  res = run_script("env_throughput.py", "--batches", "4", "8", "--steps", "4",
                   "--solver", "1:4", "--host-devices", "2")
  assert res["benchmark"] == "env_throughput" and res["devices"] == 2
  (row,) = res["results"]
  assert (row["solver_iterations"], row["ls_iterations"]) == (1, 4)
  assert [r["batch"] for r in row["mjx"]] == [4, 8]
  assert all(r["finite"] and r["env_steps_per_s"] > 0 for r in row["mjx"])
  assert row["c_engine"]["env_steps_per_s"] > 0
  best = max(r["env_steps_per_s"] for r in row["mjx"])
  assert row["ratio_mjx_best_over_c"] == pytest.approx(best / row["c_engine"]["env_steps_per_s"])


def test_env_throughput_rejects_batches_the_devices_do_not_divide():
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "env_throughput.py"),
                        "--batches", "3", "--host-devices", "2"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode != 0 and "multiples of the 2 devices" in out.stderr
  assert "Traceback" not in out.stderr
