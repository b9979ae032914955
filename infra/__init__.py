"""The mlstack Pulumi program (entry point: ``infra/__main__.py``)."""
