"""Settings of the crowd path: where clips are stored and how Toloka is asked.

No secret lives here: the Toloka token is read from ``TOLOKA_TOKEN`` and S3 keys from boto3's
usual environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), at run time only.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from rlhp_jax import config_errors as v

TOKEN_ENV = "TOLOKA_TOKEN"


@dataclasses.dataclass(frozen=True)
class StorageConfig:
  """Where rendered clips go and how a worker's browser fetches them."""

  kind: Literal["local", "s3"] = "local"
  """"local": a folder (the web page serves it); "s3": an S3 bucket (any S3-compatible store)."""
  local_dir: str = ""
  """Folder for kind="local"; empty means ``<run_dir>/clips``."""
  bucket: str = ""
  prefix: str = "rlhp-jax"
  """Key prefix; clips are stored as ``<prefix>/<run name>/<pair_id>-{left,right}.mp4``."""
  endpoint_url: str = ""
  """S3 endpoint (empty: AWS); e.g. https://storage.yandexcloud.net as in the seed post."""
  region: str = ""
  public_base_url: str = ""
  """If set, clip URLs are ``<public_base_url>/<key>`` (a public bucket, or whatever serves a
  local folder); else presigned GETs (S3) or file:// URLs (local)."""
  presign_expiry_s: int = 7 * 24 * 3600
  """Lifetime of presigned URLs: long enough for the slowest pool to finish."""

  def __post_init__(self):
    v.one_of(self.kind, ("local", "s3"), "storage.kind")
    v.positive_int(self.presign_expiry_s, "storage.presign_expiry_s")
    v.require(self.presign_expiry_s <= 7 * 24 * 3600, "storage.presign_expiry_s",
              f"S3 presigned URLs last at most 604800 s (7 days), got {self.presign_expiry_s}")
    v.require(not self.prefix.startswith("/"), "storage.prefix",
              f"must be a relative key prefix without a leading '/', got {self.prefix!r}")

  def check_ready(self) -> None:
    """Fields a live S3 run needs (called when the gatherer starts, not at config load)."""
    if self.kind == "s3":
      v.require(bool(self.bucket), "storage.bucket",
                "is empty; set --storage.bucket NAME (the bucket the clips are uploaded to)")


@dataclasses.dataclass(frozen=True)
class TolokaConfig:
  """The Toloka project and pools, quality control and price (the seed post's settings)."""

  url: str = "https://toloka.dev"
  """API base URL (the production Toloka API; tests point it at the local stand-in)."""
  project_id: str = ""
  base_pool_id: str = ""
  """The pool cloned for every batch of pairs (``rlhp-jax toloka setup`` prints it)."""
  training_pool_id: str = ""
  # -- per batch
  overlap: int = 3
  """Workers per pair (the seed suggests 3-5)."""
  tasks_per_page: int = 5
  """Pairs on one task page (the mixer's real_tasks_count)."""
  reward_per_page: float = 0.01
  """Price of one page in US dollars (the seed suggests 0.01-0.02)."""
  aggregator: Literal["majority_vote", "dawid_skene", "glad"] = "majority_vote"
  soft_labels: bool = True
  """Train on the aggregate's share of "left" (a probability); False rounds it (ties 0.5)."""
  requeue_rounds: int = 1
  """Extra pools for pairs whose only answers were "failed to load"; after them such pairs are
  dropped (counted as skipped)."""
  poll_interval_s: float = 60.0
  """Seconds between checks of an open pool (the seed waited a minute)."""
  timeout_s: float = 24 * 3600.0
  """Close a pool that has not closed after this long (counted from its opening, across
  restarts); answers of pages workers already took keep being downloaded until none is active
  or ``assignment_max_duration_seconds`` has passed."""
  outage_timeout_s: float = 3600.0
  """Stop (resumably) if polling an open pool fails for this long without a break; shorter
  Toloka or network outages are ridden out with a log line per failed poll."""
  retry_budget_s: float = 600.0
  """Seconds of transient failures (network, 429, 5xx) one other Toloka call rides out."""
  # -- project setup (rlhp-jax toloka setup)
  project_name: str = "Help AI learn to move (robot clips)"
  language: str = "EN"
  """Workers' spoken language filter."""
  training_pass_percent: int = 80
  """Share of training tasks a worker must get right on the first try."""
  fast_submit_seconds: int = 10
  """Ban a worker who submits a page faster than this (they cannot have watched the clips)."""
  ban_days: int = 1
  majority_disagreement_percent: int = 60
  """Ban a worker whose answers disagree with the majority more often than this."""
  majority_min_answers: int = 10
  """Answers a worker must have given before the majority rule can ban them."""

  def __post_init__(self):
    for name in ("overlap", "tasks_per_page", "majority_min_answers", "ban_days"):
      v.positive_int(getattr(self, name), f"toloka.{name}")
    v.require(1 <= self.overlap <= 20, "toloka.overlap", f"must be in 1..20, got {self.overlap}")
    v.one_of(self.aggregator, ("majority_vote", "dawid_skene", "glad"), "toloka.aggregator")
    v.positive(self.reward_per_page, "toloka.reward_per_page")
    v.positive(self.poll_interval_s, "toloka.poll_interval_s")
    v.positive(self.timeout_s, "toloka.timeout_s")
    v.positive(self.outage_timeout_s, "toloka.outage_timeout_s")
    v.positive(self.retry_budget_s, "toloka.retry_budget_s")
    v.require(isinstance(self.requeue_rounds, int) and self.requeue_rounds >= 0,
              "toloka.requeue_rounds", f"must be an integer >= 0, got {self.requeue_rounds!r}")
    for name in ("training_pass_percent", "majority_disagreement_percent"):
      val = getattr(self, name)
      v.require(isinstance(val, int) and 0 <= val <= 100, f"toloka.{name}",
                f"must be a percentage 0..100, got {val!r}")
    v.require(self.url.startswith(("http://", "https://")), "toloka.url",
              f"must be an http(s) URL, got {self.url!r}")

  def check_ready(self) -> None:
    v.require(bool(self.base_pool_id), "toloka.base_pool_id",
              "is empty; run 'rlhp-jax toloka setup EXPERIMENT' once and put the printed id in "
              "the config (or pass --toloka.base-pool-id ID)")
