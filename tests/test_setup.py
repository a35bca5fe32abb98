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


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 sha_ni

processor\t: 1
model name\t: another CPU that must not be read
flags\t\t: fpu amx_tile
"""


def test_summaries_name_the_host_finely_enough_to_tell_two_avx512_hosts_apart():
  # Sessions 39 and 40: two "AMD EPYC" hosts with avx2, avx512f and fma gave seed 0 different
  # paths; the family, model number, stepping and every AVX-512 flag tell such hosts apart.
  cpu = summary.parse_cpuinfo(CPUINFO)
  assert cpu == {"model": "AMD EPYC", "family": "25", "model_number": "17", "stepping": "1",
                 "features": ["avx2", "avx512f", "fma", "avx512_bf16", "avx512_vnni",
                              "avx512bw"]}
  older = summary.parse_cpuinfo(CPUINFO.replace(" avx512_vnni avx512_bf16", ""))
  assert older["features"] != cpu["features"]
  assert summary.parse_cpuinfo("") == {"model": "", "family": "", "model_number": "",
                                       "stepping": "", "features": []}
  sw = summary.software()
  assert sw["cpu"] == summary.host_cpu()
  assert sw["xla_flags"] == os.environ.get("XLA_FLAGS", "")
