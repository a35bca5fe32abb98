"""rlhp-jax: reinforcement learning from human preferences on MJX Hopper."""

# XLA reads its flags when the backend starts: one host device per core and XNNPACK off are set
# here, before anything imports jax (see ``layout.host_devices``).
from rlhp_jax.layout import host_devices as _host_devices

_host_devices()
