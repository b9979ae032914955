"""The live test rig: real workloads under a real Prometheus, for the live checks and `make snapshots`."""
