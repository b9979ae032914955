"""Serving side: TF Serving configuration, clients, the development server and Kafka services."""
