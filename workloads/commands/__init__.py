"""The ``python -m workloads`` commands of the data, training and model-selection workloads."""
