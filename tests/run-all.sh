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
.venv/bin/python -m pip install -q -e '.[dev]'

.venv/bin/ruff check agent tests bench
.venv/bin/python -m pytest -q "$@"
