"""The ports of docs/interfaces.md, the one place the Pulumi program takes them from.

The ports the workloads listen on are theirs: they are imported from the modules that define them.
"""

from workloads.serving import tfs_config
from workloads.streaming import infer_worker, stream_ingest
from workloads.training import metrics

SSH = 22
TFS_GRPC = tfs_config.GRPC_PORT
TFS_REST = tfs_config.REST_PORT
TRAINING_METRICS = metrics.METRICS_PORT
INFER_METRICS = infer_worker.METRICS_PORT
INGEST_METRICS = stream_ingest.METRICS_PORT
DCGM_EXPORTER = 9400
NODE_EXPORTER = 9100
HDFS_NAMENODE_RPC = 8020
HDFS_NAMENODE_HTTP = 9870
HDFS_DATANODE_HTTP = 9864
HDFS_DATANODE_DATA = 9866
KAFKA_BROKER = 9092
KAFKA_CONTROLLER = 9093
# The Prometheus JMX exporter agents of the data-tier daemons: the other side is the roles' defaults
# (ansible/roles/kafka: kafka_jmx_exporter_port, ansible/roles/hdfs: hdfs_jmx_exporter_port), which
# tests/infra/test_monitoring_sources.py holds equal to these.
KAFKA_JMX_EXPORTER = 9404
HDFS_JMX_EXPORTER = 9405
# The MLflow tracking server and its PostgreSQL backend store (infra.specs.tracking).
MLFLOW = 5000
POSTGRES = 5432
K3S_API = 6443
ETCD_CLIENT = 2379
ETCD_PEER = 2380
KUBELET = 10250
FLANNEL_VXLAN = 8472
DNS = 53
HTTPS = 443
HTTP = 80
