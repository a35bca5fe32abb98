"""rlhp-jax: reinforcement learning from human preferences on MJX Hopper."""

import os as _os

# XLA:CPU deadlocks on small machines (seen on 2 cores, jaxlib 0.10) when an XNNPACK-fused dot
# runs inside a while loop (MJX's solver, our scans) and waits for the same intra-op thread pool
# that runs the loop: every thread blocks, the process sleeps forever. Turning XNNPACK off
# removes the nested parallelism; it must be set before the CPU backend starts. GPU/TPU ignore it.
if "xla_cpu_use_xnnpack" not in _os.environ.get("XLA_FLAGS", ""):
  _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") +
                              " --xla_cpu_use_xnnpack=false").strip()
