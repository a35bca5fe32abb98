import os
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Identical programs compiled by different tests (e.g. two drivers over the same config) are
# compiled once per session.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="rlhp-jax-xla-"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
