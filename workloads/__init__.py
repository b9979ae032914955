"""mlstack workloads: data ingestion, distributed training, model selection, export and serving.

Nothing heavy is imported here: TensorFlow and PyTorch load only inside the commands that use them.
"""

__version__ = "0.1.0"
