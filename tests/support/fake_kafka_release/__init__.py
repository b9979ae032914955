"""fake_kafka_release: a test double of the Apache Kafka release tarball (see kafka.py for what it does)."""
