#!/usr/bin/env bash
# Print a topic's records (org.apache.kafka.tools.consumer.ConsoleConsumer); options as in Apache Kafka's
# kafka-console-consumer.sh, which also gives it a 512 MiB heap.
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xmx512M"}
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.ConsoleConsumer "$@"
