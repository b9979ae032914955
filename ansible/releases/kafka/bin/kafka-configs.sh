#!/usr/bin/env bash
# Describe and alter topic, broker, client and user (SCRAM) settings (kafka.admin.ConfigCommand); options as in Apache Kafka's kafka-configs.sh.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.ConfigCommand "$@"
