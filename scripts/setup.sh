#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package with its dev tools.
# Used by both fresh-clone commands: .ci/run (tests) and scripts/main.sh (the main job).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# pyproject.toml declares the supported range; constraints.txt pins the exact torch/torchvision CI tests with
# (on this project's machines pip takes them from local disk).
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
