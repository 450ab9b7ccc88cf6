"""Benchmark tooling shared by scripts/bench_*.py: pre-signed workloads, HTTP load, statistics."""
