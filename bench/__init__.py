"""The benchmarks: run each from the repo root as `python -m bench.NAME` (bench/support.py: what they share)."""
