#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (Debian packages, a virtual environment with the
# project and its dev extra), then runs the linter and every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# prometheus and promtool, prometheus-alertmanager and amtool, victoria-metrics: the real servers of the
# end-to-end tests; chromium: the status page and the analysis rendered headless; mtail: the peer that
# tests/test_mtail_program.py and bench/peer_figures.py run; python3-venv for Debian's Python
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus-alertmanager >/dev/null 2>&1 \
    || ! command -v victoria-metrics >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1 \
    || ! command -v mtail >/dev/null 2>&1 \
    || ! python3 -m venv --help >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager victoria-metrics chromium mtail python3-venv >/dev/null
fi

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# the dev extra brings the trainers extra (torch, mmengine) for tests/test_live_trainings.py: torch first, as
# the CPU build (a local version PyPI does not have: without the wheel on disk or a CPU index this fails here,
# loudly, instead of fetching a CUDA build of several GB or leaving the live trainings out)
.venv/bin/python -m pip install -q 'torch==2.13.0+cpu'
.venv/bin/python -m pip install -q -e '.[dev]'

.venv/bin/ruff check agent tests bench
.venv/bin/python -m pytest -q "$@"
