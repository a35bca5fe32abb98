import logging
import os
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Identical programs compiled by different tests (e.g. two drivers over the same config) are
# compiled once per session. Child processes (``rlhp-jax train`` run as a subprocess) use the
# same folder through the CLI's RLHP_JAX_COMPILE_CACHE, so no test writes to ~/.cache.
#
# Under pytest-xdist (pyproject's addopts) every worker has a folder of its own, and so do the
# child processes it starts: JAX writes a cache entry in place, so two processes compiling the
# same program at once could read each other's half-written file. A worker inherits the
# controller's environment, hence the override rather than setdefault.
_XLA_CACHE = tempfile.mkdtemp(prefix="rlhp-jax-xla-")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
if os.environ.get("PYTEST_XDIST_WORKER"):
  os.environ["RLHP_JAX_COMPILE_CACHE"] = _XLA_CACHE
else:
  os.environ.setdefault("RLHP_JAX_COMPILE_CACHE", _XLA_CACHE)

import pytest  # noqa: E402

# Fake credentials: tests must show they never reach a run directory.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "rlhp-test-key-id-0001", "AWS_SECRET_ACCESS_KEY":
            "rlhp-test-secret-value-0002", "AWS_DEFAULT_REGION": "us-east-1"}
FAKE_TOLOKA_TOKEN = "rlhp-test-toloka-token-0003"

LONGEST_FILES_FIRST = ("test_loop.py", "test_kill_matrix.py", "test_toloka.py", "test_ppo.py",
                       "test_human_labeling.py", "test_benchmarks.py", "test_reward_model.py")
"""The files that take longest (sessions 36-37, two workers: test_loop ~850-870 s, the kill
matrix 361-528 s in one test, test_toloka ~230-240 s, of ~2500 s in all), collected first.
pytest-xdist hands whole files to whichever worker is free in collection order (pyproject's
addopts turn off its own reordering by test count, which put the one-test kill matrix last), so
no long file starts when the other worker has little left."""


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file


@pytest.fixture(scope="session")
def s3_server():
  """A real S3 server on loopback (moto's ThreadedMotoServer) with a bucket; yields
  (endpoint_url, bucket). Credentials are the fakes above, set in the environment only."""
  from moto.server import ThreadedMotoServer
  saved = {k: os.environ.get(k) for k in FAKE_AWS}
  os.environ.update(FAKE_AWS)
  server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
  server.start()
  host, port = server.get_host_and_port()
  endpoint = f"http://{host}:{port}"
  import boto3
  boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="rlhp-clips")
  yield endpoint, "rlhp-clips"
  server.stop()
  for k, val in saved.items():
    if val is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = val


@pytest.fixture
def logs(caplog):
  """The lines the package logged during the test (``rlhp_jax`` loggers, INFO and up)."""
  caplog.set_level(logging.INFO, logger="rlhp_jax")

  class Lines:
    def __iter__(self):
      return iter([r.getMessage() for r in caplog.records])
  return Lines()
