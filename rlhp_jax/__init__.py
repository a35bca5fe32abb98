"""rlhp-jax: reinforcement learning from human preferences on MJX Hopper."""

import os as _os

# XLA:CPU deadlocks on small machines (seen on 2 cores, jaxlib 0.10) when an XNNPACK-fused dot
# runs inside a while loop (MJX's solver, our scans) and waits for the same intra-op thread pool
# that runs the loop: every thread blocks, the process sleeps forever. Turning XNNPACK off
# removes the nested parallelism; it must be set before the CPU backend starts. GPU/TPU ignore it.
#
# One XLA host device per core: XLA:CPU runs one program's small, loop-heavy kernels (MJX's
# solver, the PPO scans) mostly on one thread, so runs are split over host devices, one per
# core: by seed when they divide evenly, else each run's env batch (``loop.Layout``). Measured
# on 2 cores: MJX Hopper 18 k env steps/s on one device, 39 k split over two; the main job's
# iteration 1.97 s on one device, 1.30 s split. ``RLHP_JAX_HOST_DEVICES`` or an explicit XLA
# flag overrides the count.
_flags = _os.environ.get("XLA_FLAGS", "")
if "xla_cpu_use_xnnpack" not in _flags:
  _flags += " --xla_cpu_use_xnnpack=false"
if "xla_force_host_platform_device_count" not in _flags:
  _count = _os.environ.get("RLHP_JAX_HOST_DEVICES") or str(_os.cpu_count() or 1)
  _flags += f" --xla_force_host_platform_device_count={_count}"
_os.environ["XLA_FLAGS"] = _flags.strip()
