"""Benchmarks of ttabench itself, run from the repository root (see benchmarks/README.md)."""
