"""The package's import structure: every module imports on its own in a fresh interpreter, the
import graph (module-level and function-level imports alike, read with ``ast``) has no cycle,
and imports only point down the layers below (docs/architecture.md): a gatherer never imports
the drivers, the core or the root config."""

import ast
import concurrent.futures
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "rlhp_jax")

LAYERS = {
    0: ["rlhp_jax", "rlhp_jax.config_errors", "rlhp_jax.faults", "rlhp_jax.jsonl",
        "rlhp_jax.running_stats", "rlhp_jax.sampling",
        "rlhp_jax.stats", "rlhp_jax.layout", "rlhp_jax.compile_cache", "rlhp_jax.run_lock"],
    1: ["rlhp_jax.envs", "rlhp_jax.envs.tasks", "rlhp_jax.envs.hopper", "rlhp_jax.networks",
        "rlhp_jax.ppo", "rlhp_jax.reward_model", "rlhp_jax.fragments", "rlhp_jax.branches",
        "rlhp_jax.preferences",
        "rlhp_jax.teachers", "rlhp_jax.render", "rlhp_jax.report",
        "rlhp_jax.label_store", "rlhp_jax.clips", "rlhp_jax.crowd", "rlhp_jax.crowd.config",
        "rlhp_jax.crowd.retry", "rlhp_jax.crowd.storage", "rlhp_jax.crowd.aggregate",
        "rlhp_jax.human", "rlhp_jax.human.config"],
    2: ["rlhp_jax.summary", "rlhp_jax.crowd.toloka_gatherer", "rlhp_jax.crowd.toloka_setup",
        "rlhp_jax.human.gatherer", "rlhp_jax.human.server"],
    3: ["rlhp_jax.experiment", "rlhp_jax.core", "rlhp_jax.checkpoint"],
    4: ["rlhp_jax.loop"],
    5: ["rlhp_jax.cli"],
}
"""A module imports modules of its own layer or below, never above: pure maths, envs and host
utilities (0-1); gatherers and the run's summary (2); the root config, the core and its
checkpoints (3); the
drivers (4); the command line (5)."""
RANK = {module: rank for rank, modules in LAYERS.items() for module in modules}


def package_modules() -> dict[str, str]:
  """{module name: file path} of every module in the package."""
  found = {}
  for folder, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        found[".".join(parts)] = path
  return found


def imports_of(path: str, modules) -> set[str]:
  """Package modules a file imports anywhere in it (``from rlhp_jax import x`` counts as
  ``rlhp_jax.x`` when x is a module, else as the package)."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name in modules}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module in modules:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        out.add(full if full in modules else node.module)
  return out


def graph() -> dict[str, set[str]]:
  modules = package_modules()
  return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_every_package_module_has_a_layer():
  missing = sorted(set(package_modules()) - set(RANK))
  assert not missing, f"add {missing} to LAYERS in tests/test_imports.py (and the module map)"


def test_the_import_graph_has_no_cycle():
  edges, state, path = graph(), {}, []

  def visit(node):
    state[node] = "open"
    path.append(node)
    for nxt in sorted(edges[node]):
      if state.get(nxt) == "open":
        cycle = path[path.index(nxt):] + [nxt]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if nxt not in state:
        visit(nxt)
    path.pop()
    state[node] = "done"

  for node in sorted(edges):
    if node not in state:
      visit(node)


def test_imports_point_down_the_layers():
  up = [f"{a} (layer {RANK[a]}) imports {b} (layer {RANK[b]})"
        for a, targets in graph().items() if a in RANK
        for b in sorted(targets) if b in RANK and RANK[b] > RANK[a]]
  assert not up, "\n".join(up)


def test_gatherers_never_import_the_drivers_the_core_or_the_root_config():
  edges = graph()
  gatherers = [m for m in edges if m.startswith(("rlhp_jax.crowd", "rlhp_jax.human"))
               or m in ("rlhp_jax.clips", "rlhp_jax.label_store", "rlhp_jax.render")]
  forbidden = {"rlhp_jax.loop", "rlhp_jax.core", "rlhp_jax.experiment", "rlhp_jax.cli"}

  def reach(module, seen):
    for nxt in edges[module]:
      if nxt not in seen:
        seen.add(nxt)
        reach(nxt, seen)
    return seen

  bad = {g: sorted(reach(g, set()) & forbidden) for g in gatherers}
  assert not any(bad.values()), {g: b for g, b in bad.items() if b}


def _import_alone(module: str):
  proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
  return module, proc.returncode, proc.stderr[-1500:]


def test_each_module_imports_alone_in_a_fresh_interpreter():
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = list(pool.map(_import_alone, sorted(package_modules())))
  failed = [f"{m}: {err}" for m, code, err in results if code != 0]
  assert not failed, "\n".join(failed)
