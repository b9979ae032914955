"""mlstack's Grafana dashboards and Prometheus rules as code.

``python -m dashboards`` generates ``dashboards/generated/``; ``dashboards.contract`` holds the checks
the test suite runs on the generated files (alert contract, metric names, promtool).
"""
