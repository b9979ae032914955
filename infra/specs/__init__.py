"""Pure builders: plain dicts and dataclasses for every resource, testable without the Pulumi engine.

Nothing here imports Pulumi; ``infra/components`` turns these specs into resources.
"""
