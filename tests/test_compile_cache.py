"""The persistent compilation cache: where it goes, off, a bad folder, and that a second process
loads what the first compiled."""

import json
import os
import subprocess
import sys

import jax
import pytest

from rlhp_jax import compile_cache, config_errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cache_dir_default_off_explicit_and_a_bad_folder(tmp_path):
  base = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
  assert compile_cache.cache_dir(base) == str(tmp_path / "xdg" / "rlhp-jax" / "xla")
  assert (tmp_path / "xdg" / "rlhp-jax" / "xla").is_dir()
  for off in ("off", "OFF", " 0 ", "none"):
    assert compile_cache.cache_dir({**base, compile_cache.ENV: off}) is None
  mine = tmp_path / "mine" / "xla"
  assert compile_cache.cache_dir({compile_cache.ENV: str(mine)}) == str(mine)
  assert mine.is_dir()
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(config_errors.ConfigError) as e:
    compile_cache.cache_dir({compile_cache.ENV: str(blocker / "xla")})
  message = str(e.value)
  assert message.startswith(f"{compile_cache.ENV}: cannot write") and "'off'" in message
  assert "\n" not in message


def test_enable_leaves_a_configured_cache_alone(tmp_path):
  configured = jax.config.jax_compilation_cache_dir    # the test session's (conftest)
  assert configured
  assert compile_cache.enable({compile_cache.ENV: str(tmp_path / "other")}) == configured
  assert jax.config.jax_compilation_cache_dir == configured
  assert not (tmp_path / "other").exists()


CHILD = """
import json, sys
import rlhp_jax
from rlhp_jax import compile_cache
import jax, jax.numpy as jnp
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
path = compile_cache.enable()
y = jax.jit(lambda x: jnp.sin(x) * 3.0 + jnp.cumsum(x))(jnp.arange(5.0))
print(json.dumps({"path": path, "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "y": [float(v) for v in y]}))
"""


def _child(env_value: str) -> dict:
  env = {**os.environ, compile_cache.ENV: env_value, "JAX_PLATFORMS": "cpu",
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "PYTHONPATH": ROOT}
  out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       timeout=300, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
  folder = tmp_path / "xla"
  first = _child(str(folder))
  assert first["path"] == str(folder) and first["hits"] == 0
  assert any(folder.iterdir())                       # the executable was stored
  second = _child(str(folder))
  assert second["hits"] >= 1 and second["y"] == first["y"]
  off = _child("off")
  assert off["path"] is None and off["hits"] == 0 and off["y"] == first["y"]


def test_train_with_an_unwritable_cache_is_one_line_and_writes_nothing(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  out = tmp_path / "runs"
  env = {**os.environ, compile_cache.ENV: str(blocker / "xla"), "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": ROOT}
  proc = subprocess.run([sys.executable, "-m", "rlhp_jax.cli", "train",
                         os.path.join(ROOT, "experiments", "hopper_synthetic.py"),
                         "--out", str(out)], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2
  lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
  assert len(lines) == 1 and compile_cache.ENV in lines[0] and "Traceback" not in proc.stderr
  assert not out.exists()
