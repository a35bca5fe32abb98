"""Settings of the local labelling page (``labels="human"``)."""

from __future__ import annotations

import dataclasses

from rlhp_jax import config_errors as v


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
  allowed_hosts: tuple[str, ...] = ()
  """Host names the page may be reached by besides loopback (127.0.0.1, localhost, ::1), e.g.
  this machine's name when ``host`` binds beyond loopback. Requests naming any other Host are
  refused (a guard against DNS rebinding)."""

  def __post_init__(self):
    v.require(isinstance(self.host, str) and bool(self.host.strip()), "human.host",
              f"must be an interface address such as 127.0.0.1, got {self.host!r}")
    v.require(isinstance(self.port, int) and 0 <= self.port < 65536, "human.port",
              f"must be a TCP port in [0, 65535] (0: any free port), got {self.port!r}")
    v.non_negative(self.batch_timeout_s, "human.batch_timeout_s")
    object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
    v.require(all(isinstance(h, str) and h and "/" not in h for h in self.allowed_hosts),
              "human.allowed_hosts", f"must be host names, got {self.allowed_hosts!r}")
