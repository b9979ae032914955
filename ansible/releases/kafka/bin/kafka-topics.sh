#!/usr/bin/env bash
# Create, alter, describe and list topics (org.apache.kafka.tools.TopicCommand); options as in Apache Kafka's kafka-topics.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
