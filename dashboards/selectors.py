"""Label selectors on what mlstack deploys (:data:`dashboards.params.DEPLOYMENT`), written once for the
boards and the rules, so a panel and the alert beside it always select the same series."""

from __future__ import annotations

from dashboards.params import DEPLOYMENT

NODE_EXPORTER = f'job="{DEPLOYMENT.node_exporter_job}"'
"""node_exporter's targets: a matcher, to be put in braces alone or with others (``{NODE_EXPORTER, mode="idle"}``)."""
TRAINING_NAMESPACE = f'{{namespace="{DEPLOYMENT.training_namespace}"}}'
"""Series of the training namespace's pods."""
SERVING_NAMESPACE = f'{{namespace="{DEPLOYMENT.serving_namespace}"}}'
"""Series of the serving namespace's objects (its HorizontalPodAutoscalers)."""
