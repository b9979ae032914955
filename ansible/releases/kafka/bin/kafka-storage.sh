#!/usr/bin/env bash
# KRaft storage: random-uuid, format, info (kafka.tools.StorageTool); options as in Apache Kafka's kafka-storage.sh.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
