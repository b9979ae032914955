#!/usr/bin/env bash
# KRaft quorum status and replication (org.apache.kafka.tools.MetadataQuorumCommand); options as in Apache Kafka's kafka-metadata-quorum.sh.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
