"""Convert Fashion-MNIST into shards: the IDX files at --data (gzipped or not; a local path, s3://,
hdfs:// or webhdfs:// URL), or, without --data (or with an empty --data=), deterministic synthetic
Fashion-MNIST.

Writes OUTPUT/train/ and OUTPUT/test/, each a shard directory with a manifest (see
docs/interfaces.md, "Shard format"). Re-running with the same source and settings does nothing.
--digest-output writes the dataset's content digest (what the Argo workflow keys its memoized trials
on): the same records give the same digest, however often they are ingested; other records another.

--engine spark converts with Spark tasks in parallel (--spark-master; default local[N], N = cores)
and also reads a Parquet table of images and labels (docs/interfaces.md, "Parquet input"): it drops
duplicate records, splits a table without a split column by record hash (--test-fraction), fails on
the first bad row (or, with --rejects URL, sets bad rows aside) and records per-class counts and pixel
statistics in the manifests. Its output is the same shard format; only the record order differs.

The manifests carry the dataset's class names: --class-names, or else Fashion-MNIST's for synthetic
data and for the Fashion-MNIST release (recognised by its label files' content), and the label
numbers 0..9 for any other IDX data.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

from workloads.core import logs, storage
from workloads.core.settings import CommandConfig, ConfigError, non_negative, option, positive
from workloads.data import datasets, spark_ingest
from workloads.data.shards import DEFAULT_SHARD_SIZE, Manifest

HELP = "convert Fashion-MNIST IDX files (or synthetic data) into checksummed shards"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    output: str = option(help="dataset directory to write train/ and test/ shards into (path or URL)")
    data: str | None = option(
        None,
        help="directory (path or URL) of the four Fashion-MNIST IDX files; none or empty (--data=, for "
        "callers that cannot leave a flag out, such as an Argo template) = synthetic",
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
    class_names: tuple[str, ...] = option(
        (),
        help=f"names of the class ids 0..{datasets.NUM_CLASSES - 1}, comma-separated, in id order; none = "
        "Fashion-MNIST's for synthetic data and the Fashion-MNIST release, the label numbers otherwise",
        check=datasets.class_names_problem,
        metavar="NAME,...",
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")
    engine: Literal["python", "spark"] = option(
        "python",
        help="python = one process (IDX or synthetic); spark = Spark tasks in parallel (IDX or Parquet "
        "--data; needs the spark extra and a Java 17+ runtime)",
    )
    spark_master: str | None = option(
        None,
        help="Spark master URL for --engine spark (local[N], spark://host:port, k8s://...); none = "
        "local[N] with N = this machine's cores",
    )
    spark_conf: tuple[str, ...] = option(
        (),
        help="Spark setting for --engine spark, KEY=VALUE with a spark.* key (e.g. "
        "spark.sql.shuffle.partitions=8, or spark.executor.instances=4 with a cluster --spark-master); "
        "several after the flag; a value cannot hold a comma (lists split on commas)",
        check=spark_ingest.conf_problem,
        metavar="KEY=VALUE",
    )
    data_format: str = option(
        "auto",
        help="what --data holds (--engine spark): idx = the four Fashion-MNIST IDX files, parquet = a Parquet "
        "file or directory of image/label rows; auto = IDX when the four files are there, else Parquet",
        choices=spark_ingest.FORMATS,
    )
    test_fraction: float = option(
        0.1,
        help="share of records that go to test/ when a Parquet source has no split column (by record hash, "
        "so the same record always lands in the same split)",
        check=lambda value: None if 0 <= value < 1 else f"must be in [0, 1), got {value}",
    )
    rejects: str | None = option(
        None,
        help="Parquet table (path or Spark URL) to set bad rows of a Parquet source aside in, with the reason "
        "for each, and ingest the rest (--engine spark); none = the first bad row fails the ingest",
    )
    digest_output: str | None = option(
        None,
        help="file (path or URL) to write the dataset's content digest to, atomically: one line of hex "
        "without a line break; none = do not write",
    )

    def validate(self) -> None:
        if self.engine == "spark":
            if not self.data:
                raise ConfigError(
                    "--data",
                    "--engine spark converts --data (IDX or Parquet); synthetic data "
                    "is the python engine's: leave --engine out",
                )
            return
        for name, given in (
            ("spark_master", self.spark_master),
            ("spark_conf", self.spark_conf),
            ("rejects", self.rejects),
            ("data_format", self.data_format == "parquet"),
        ):
            if given:
                raise ConfigError(
                    f"--{name.replace('_', '-')}", "only --engine spark uses it: add --engine spark"
                )


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    manifests = _ingest(config)
    _report(config, manifests)
    if config.digest_output:
        digest = datasets.dataset_digest(manifests)
        storage.publish_bytes(config.digest_output, digest.encode())
        log.info("dataset digest %s", digest, extra=logs.fields(path=config.digest_output, digest=digest))
    return 0


def _ingest(config: Config) -> dict[str, Manifest]:
    if config.engine == "spark":
        job = spark_ingest.Job(
            source=config.data,
            output=config.output,
            master=config.spark_master or spark_ingest.default_master(),
            data_format=config.data_format,
            shard_size=config.shard_size,
            test_fraction=config.test_fraction,
            rejects=config.rejects,
            class_names=config.class_names,
            spark_conf=spark_ingest.parse_conf(config.spark_conf),
        )
        return spark_ingest.ingest(job)
    if config.data:
        return datasets.ingest_idx(
            config.data, config.output, shard_size=config.shard_size, class_names=config.class_names
        )
    return datasets.ingest_synthetic(
        config.output,
        train_records=config.synthetic_train,
        test_records=config.synthetic_test,
        seed=config.seed,
        shard_size=config.shard_size,
        class_names=config.class_names,
    )


def _report(config: Config, manifests: dict[str, Manifest]) -> None:
    for split, manifest in manifests.items():
        log.info(
            "%s: %d records in %d shards",
            split,
            manifest.records,
            len(manifest.shards),
            extra=logs.fields(split=split, url=storage.join(config.output, split)),
        )
    names = datasets.class_names(manifests["train"])
    log.info("class names: %s", ", ".join(names), extra=logs.fields(class_names=list(names)))
