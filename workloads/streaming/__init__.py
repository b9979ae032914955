"""The Kafka services: event-driven inference (infer-worker) and streaming ingestion (stream-ingest)."""
