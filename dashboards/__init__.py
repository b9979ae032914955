"""mlstack's Grafana dashboards and Prometheus rules as code.

``python -m dashboards`` generates ``dashboards/generated/``; ``dashboards.contract`` holds the checks
the test suite runs on the generated files (alert contract, metric names, promtool). The package is
content and its generation only: it imports nothing from ``workloads`` or ``tests``
(tests/dashboards/test_layout.py); the rig that checks it against the running workloads is
tests/dashboards/rig/.
"""
