#!/usr/bin/env bash
# Sets up rlhp-jax on a fresh Debian/Ubuntu machine: system GL libraries for the CPU MuJoCo
# renderer (EGL or OSMesa), Debian's chromium (the labelling page's browser test), a virtual
# environment in .venv, and the package with its test extras. Idempotent: a second run only
# checks.
set -euo pipefail
cd "$(dirname "$0")"

need=()
for pkg in libegl1 libgl1-mesa-dri libosmesa6 chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]} (CPU rendering of clips; chromium for the web-page test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]}: run 'sudo apt-get install ${need[*]}' (videos need the GL" \
         "libraries, the browser test needs chromium; training works without)" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# constraints.txt pins the numerical stack: the same seed takes the same path on a fresh setup
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
echo "setup: ready (.venv/bin/rlhp-jax)"
