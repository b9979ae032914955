#!/usr/bin/env bash
# List, describe and reset consumer groups (org.apache.kafka.tools.consumer.group.ConsumerGroupCommand); options as in Apache Kafka's kafka-consumer-groups.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
