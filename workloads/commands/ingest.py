"""Convert Fashion-MNIST into shards: the IDX files at --data (gzipped or not; a local path, s3://,
hdfs:// or webhdfs:// URL), or, without --data, deterministic synthetic Fashion-MNIST.

Writes OUTPUT/train/ and OUTPUT/test/, each a shard directory with a manifest (see
docs/interfaces.md, "Shard format"). Re-running with the same source and settings does nothing.
"""

from __future__ import annotations

import dataclasses
import logging

from workloads.core import logs, storage
from workloads.core.settings import CommandConfig, non_negative, option, positive
from workloads.data import datasets
from workloads.data.shards import DEFAULT_SHARD_SIZE

HELP = "convert Fashion-MNIST IDX files (or synthetic data) into checksummed shards"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    output: str = option(help="dataset directory to write train/ and test/ shards into (path or URL)")
    data: str | None = option(
        None, help="directory (path or URL) of the four Fashion-MNIST IDX files; none = synthetic"
    )
    shard_size: int = option(
        DEFAULT_SHARD_SIZE,
        help="records per shard (the last shard of a split may hold fewer)",
        check=positive,
    )
    synthetic_train: int = option(60000, help="synthetic training records (without --data)", check=positive)
    synthetic_test: int = option(
        10000, help="synthetic held-out records (without --data)", check=non_negative
    )
    seed: int = option(0, help="seed of the synthetic generator")
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    if config.data:
        manifests = datasets.ingest_idx(config.data, config.output, shard_size=config.shard_size)
    else:
        manifests = datasets.ingest_synthetic(
            config.output,
            train_records=config.synthetic_train,
            test_records=config.synthetic_test,
            seed=config.seed,
            shard_size=config.shard_size,
        )
    for split, manifest in manifests.items():
        log.info(
            "%s: %d records in %d shards",
            split,
            manifest.records,
            len(manifest.shards),
            extra=logs.fields(split=split, url=storage.join(config.output, split)),
        )
    return 0
