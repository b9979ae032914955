"""The TF Serving contract and its clients: config files, REST and gRPC clients, payloads, tensors,
status codes, the load generator. The development server that stands in for TF Serving is ``dev/``."""
