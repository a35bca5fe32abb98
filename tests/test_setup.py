"""The fresh setup installs the pinned numerical stack (constraints.txt), so that one config and
seed takes one floating-point path from setup to setup; summaries name what they ran with."""

import os
import re
from importlib import metadata

from rlhp_jax import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pins() -> dict:
  out = {}
  for line in open(os.path.join(ROOT, "constraints.txt")):
    line = line.split("#")[0].strip()
    if line:
      name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", line).groups()
      out[name.lower().replace("_", "-")] = version
  return out


def test_constraints_pin_every_package_a_summary_names():
  pinned = pins()
  missing = [p for p in summary.VERSIONED_PACKAGES if p not in pinned]
  assert not missing, f"pin {missing} in constraints.txt"


def test_setup_installs_the_pins():
  setup = open(os.path.join(ROOT, "setup.sh")).read()
  assert "-c constraints.txt" in setup
  # this environment came from setup.sh: it must hold exactly the pinned versions
  wrong = {name: (metadata.version(name), version) for name, version in pins().items()
           if metadata.version(name) != version}
  assert not wrong, f"installed (found, pinned): {wrong}; run ./setup.sh"
