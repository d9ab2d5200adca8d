# shellcheck shell=bash
# Point Slurm clients at the test cluster started by tests/slurm/cluster.sh:
#   source tests/slurm/env.sh
# Parsers: SLURM_CONF is "$SLURM_TEST_DIR/slurm.conf", and SLURM_TEST_DIR
# defaults to /tmp/snakemake-quantum-slurm (so SLURM_CONF defaults to
# /tmp/snakemake-quantum-slurm/slurm.conf).
export SLURM_TEST_DIR="${SLURM_TEST_DIR:-/tmp/snakemake-quantum-slurm}"
export SLURM_CONF="$SLURM_TEST_DIR/slurm.conf"
