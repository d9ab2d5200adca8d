"""Benchmarks of snakemake-executor-plugin-quantum: ``python benchmarks/run.py [--quick]``."""
