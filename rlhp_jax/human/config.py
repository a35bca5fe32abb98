"""Settings of the local labelling page (``labels="human"``)."""

from __future__ import annotations

import dataclasses

from rlhp_jax import validation as v


@dataclasses.dataclass(frozen=True)
class HumanConfig:
  """The web page a researcher judges pairs on."""

  host: str = "127.0.0.1"
  """Interface to bind; loopback by default (the page is for the person at this machine)."""
  port: int = 8765
  """TCP port; 0 picks a free one (printed at start)."""
  batch_timeout_s: float = 0.0
  """Seconds to wait for a batch of judgements before going on with what is answered;
  0 waits until every pair of the batch is judged."""

  def __post_init__(self):
    v.require(isinstance(self.host, str) and bool(self.host.strip()), "human.host",
              f"must be an interface address such as 127.0.0.1, got {self.host!r}")
    v.require(isinstance(self.port, int) and 0 <= self.port < 65536, "human.port",
              f"must be a TCP port in [0, 65535] (0: any free port), got {self.port!r}")
    v.non_negative(self.batch_timeout_s, "human.batch_timeout_s")
