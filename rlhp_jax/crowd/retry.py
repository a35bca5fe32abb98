"""Retrying calls to remote services (Toloka, S3) on transient failures, with backoff.

Transient: network errors, HTTP 429 (honouring Retry-After, capped at the backoff maximum) and
5xx. Everything else (a bad token, a missing pool, a validation error) is raised at once:
retrying cannot fix it. Calls get a time budget, not a count: an outage shorter than the budget
(10 minutes by default) is ridden out.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetriesExhausted(RuntimeError):
  """A remote service kept failing transiently for longer than the call's budget."""


class CrowdError(RuntimeError):
  """A problem at a remote service (Toloka, S3) that retrying cannot fix; the message is one
  line that says what to do."""


def _status(error: BaseException) -> int | None:
  status = getattr(error, "status_code", None)
  if status is None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is None and isinstance(response, dict):  # botocore ClientError
      status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
  return status if isinstance(status, int) else None


def is_transient(error: BaseException) -> bool:
  """Network trouble, 429 or 5xx."""
  import httpx
  if isinstance(error, (httpx.TransportError, ConnectionError, TimeoutError)):
    return True
  try:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import EndpointConnectionError
    if isinstance(error, (BotoConnectionError, EndpointConnectionError)):
      return True
  except ImportError:  # pragma: no cover
    pass
  status = _status(error)
  return status is not None and (status == 429 or status >= 500)


def _retry_after(error: BaseException) -> float | None:
  """The server's Retry-After in seconds, if it sent a usable one (a number >= 0)."""
  response = getattr(error, "response", None)
  headers = getattr(response, "headers", None)
  if headers is None or not hasattr(headers, "get"):
    return None
  value = headers.get("retry-after")
  try:
    delay = float(value) if value is not None else None
  except (TypeError, ValueError):
    return None
  return delay if delay is not None and math.isfinite(delay) and delay >= 0 else None


def describe(error: BaseException) -> str:
  """``TypeName (status N)``, short, for log lines."""
  status = _status(error)
  return f"{type(error).__name__}" + (f" (status {status})" if status is not None else "")


def retry_call(fn: Callable[[], T], what: str, budget_s: float = 600.0, base_delay: float = 0.5,
               max_delay: float = 30.0, sleep=time.sleep, on_retry=None,
               clock=time.monotonic) -> T:
  """Calls ``fn()`` until it succeeds, retrying transient errors with exponential backoff and
  jitter, or the server's Retry-After capped at ``max_delay``. Gives up with
  ``RetriesExhausted`` once the failures have lasted ``budget_s`` seconds (counted as the
  larger of the wall-clock time and the time slept). ``on_retry(error)`` is told of every
  retry."""
  start, slept, attempt = clock(), 0.0, 0
  while True:
    try:
      return fn()
    except Exception as e:  # noqa: BLE001 - classified below
      if not is_transient(e):
        raise
      elapsed = max(clock() - start, slept)
      if elapsed >= budget_s:
        raise RetriesExhausted(f"{what}: still failing after {attempt + 1} attempts over "
                               f"{elapsed:.0f}s ({describe(e)}); check the network and the "
                               "service's status, then resume the run") from e
      delay = _retry_after(e)
      if delay is None:
        delay = min(max_delay, base_delay * 2**attempt) * (0.5 + random.random() / 2)
      delay = min(delay, max_delay, max(0.0, budget_s - elapsed))
      attempt += 1
      log.warning("%s: %s, retry %d in %.1fs", what, describe(e), attempt, delay)
      if on_retry is not None:
        on_retry(e)
      sleep(delay)
      slept += delay
