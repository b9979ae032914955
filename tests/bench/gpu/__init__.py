"""The prepared GPU run: `python3 -m tests.bench.gpu` on the device machine (see __main__.py, docs/benchmarks.md)."""
