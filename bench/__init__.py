"""`python -m bench`: measured speed and scale-out of the relay, written to BENCHMARKS.md."""
