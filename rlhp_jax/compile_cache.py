"""XLA's persistent compilation cache for long runs: a run re-uses the executables that an
earlier run of the same shapes compiled, instead of compiling them again.

On the 2-core CPU the main job's programs take ~35 s to compile, every run (session 25,
benchmarks/RESULTS.md). With the cache the first run of a config compiles and stores them
(a few MB); every later run of that config, any seed or budget, loads them. The results are
the same to the last digit: the cache holds the programs, not their inputs.

``RLHP_JAX_COMPILE_CACHE`` says where: unset or empty, ``$XDG_CACHE_HOME/rlhp-jax/xla``
(``~/.cache/rlhp-jax/xla``); ``off`` turns it off; anything else is the folder. A cache that
is already configured (``jax_compilation_cache_dir``: a test session's, a notebook's) is left
as it is. ``rlhp-jax train`` and ``benchmarks/arms.py`` turn it on; a library user calls
``enable()`` or sets jax's option directly. JAX keys each entry by the program, the jax and
XLA versions, the devices and the flags, so a stale entry is never used, only left behind:
delete the folder to reclaim the space.
"""

from __future__ import annotations

import os

from rlhp_jax import config_errors

ENV = "RLHP_JAX_COMPILE_CACHE"
OFF = ("off", "0", "false", "no", "none")


def default_dir(environ=os.environ) -> str:
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "rlhp-jax", "xla")


def cache_dir(environ=os.environ) -> str | None:
  """The folder ``RLHP_JAX_COMPILE_CACHE`` names (made if missing), or None when it says off.
  A folder that cannot be made or written is a ``ConfigError`` naming the variable."""
  value = environ.get(ENV, "").strip()
  if value.lower() in OFF:
    return None
  path = os.path.abspath(os.path.expanduser(value or default_dir(environ)))
  try:
    os.makedirs(path, exist_ok=True)
    writable = os.access(path, os.W_OK)
  except OSError as e:
    writable, path = False, f"{path} ({e.strerror})"
  config_errors.require(writable, ENV, f"cannot write the compile cache folder {path}; set it "
                        f"to a writable folder, or to 'off' to compile every run")
  return path


def enable(environ=os.environ) -> str | None:
  """Points jax's persistent compilation cache at ``cache_dir()`` unless a cache is already
  configured. Call before the first compile. Returns the folder in use (None: off)."""
  import jax
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  path = cache_dir(environ)
  if path is not None:
    jax.config.update("jax_compilation_cache_dir", path)
  return path
