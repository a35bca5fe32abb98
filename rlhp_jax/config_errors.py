"""Config errors: every bad field becomes one line that names the field and the fix."""

from __future__ import annotations


class ConfigError(Exception):
  """A config field holds a value the code cannot use.

  The message is a single line: ``<section.field>: <what is wrong>; <what to do>``.
  The CLI prints it without a traceback. (Not a ValueError: tyro would reformat those.)
  """


def require(ok: bool, field: str, message: str) -> None:
  """Raises ``ConfigError(f"{field}: {message}")`` unless ``ok``."""
  if not ok:
    raise ConfigError(f"{field}: {message}")


def positive_int(value, field: str) -> None:
  require(isinstance(value, int) and not isinstance(value, bool) and value > 0, field,
          f"must be a positive integer, got {value!r}")


def positive(value, field: str) -> None:
  require(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, field,
          f"must be a positive number, got {value!r}")


def non_negative(value, field: str) -> None:
  require(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, field,
          f"must be a number >= 0, got {value!r}")


def probability(value, field: str) -> None:
  require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1,
          field, f"must be a probability in [0, 1], got {value!r}")


def one_of(value, choices, field: str) -> None:
  require(value in choices, field, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")


def print_json_or_refuse(program: str, compute, errors: tuple = ()) -> int:
  """A benchmark script's ending: ``compute()``'s result as JSON on stdout and exit status 0, or,
  if it raises ``ConfigError`` (or one of ``errors``), one line ``<program>: <message>`` on stderr,
  nothing on stdout, and exit status 2."""
  import json
  import sys
  try:
    result = compute()
  except (ConfigError, *errors) as e:
    print(f"{program}: {e}", file=sys.stderr)
    return 2
  print(json.dumps(result, indent=1))
  return 0
