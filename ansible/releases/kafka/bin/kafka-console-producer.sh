#!/usr/bin/env bash
# Produce lines of stdin to a topic (org.apache.kafka.tools.ConsoleProducer); options as in Apache Kafka's
# kafka-console-producer.sh, which also gives it a 512 MiB heap.
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xmx512M"}
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.ConsoleProducer "$@"
