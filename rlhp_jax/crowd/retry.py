"""Retrying calls to remote services (Toloka, S3) on transient failures, with backoff.

Transient: network errors, HTTP 429 (honouring Retry-After) and 5xx. Everything else (a bad
token, a missing pool, a validation error) is raised at once: retrying cannot fix it.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger("rlhp_jax.crowd")


class RetriesExhausted(RuntimeError):
  pass


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
  response = getattr(error, "response", None)
  headers = getattr(response, "headers", None)
  if headers is None:
    return None
  value = headers.get("retry-after")
  try:
    return float(value) if value is not None else None
  except ValueError:
    return None


def retry_call(fn: Callable[[], T], what: str, attempts: int = 6, base_delay: float = 0.5,
               max_delay: float = 30.0, sleep=time.sleep, on_retry=None) -> T:
  """Calls ``fn()`` until it succeeds, retrying transient errors with exponential backoff and
  jitter (or the server's Retry-After). ``on_retry(error)`` is told of every retry."""
  for attempt in range(attempts):
    try:
      return fn()
    except Exception as e:  # noqa: BLE001 - classified below
      if not is_transient(e):
        raise
      if attempt == attempts - 1:
        raise RetriesExhausted(f"{what}: still failing after {attempts} attempts "
                               f"({type(e).__name__}, status {_status(e)})") from e
      delay = _retry_after(e)
      if delay is None:
        delay = min(max_delay, base_delay * 2**attempt) * (0.5 + random.random() / 2)
      log.warning("%s: %s (status %s), retry %d/%d in %.1fs", what, type(e).__name__,
                  _status(e), attempt + 1, attempts - 1, delay)
      if on_retry is not None:
        on_retry(e)
      sleep(delay)
  raise AssertionError("unreachable")
