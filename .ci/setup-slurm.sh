#!/usr/bin/env bash
# Installs Debian's slurm-wlm and munge (when missing) for the SLURM tests, which start and stop
# a single-node cluster themselves (tests/slurm_cluster.py). Needs root and apt-get; prints the
# install time. The daemons are not started here.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tests/slurm_cluster.py install
