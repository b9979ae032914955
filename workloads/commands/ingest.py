"""Convert Fashion-MNIST into shards: the IDX files at --data (gzipped or not; a local path, s3://,
hdfs:// or webhdfs:// URL), or, without --data (or with an empty --data=), deterministic synthetic
Fashion-MNIST.

Writes OUTPUT/train/ and OUTPUT/test/, each a shard directory with a manifest (see
docs/interfaces.md, "Shard format"). Re-running with the same source and settings does nothing.
--digest-output writes the dataset's content digest (what the Argo workflow keys its memoized trials
on): the same records give the same digest, however often they are ingested; other records another.

The manifests carry the dataset's class names: --class-names, or else Fashion-MNIST's for synthetic
data and for the Fashion-MNIST release (recognised by its label files' content), and the label
numbers 0..9 for any other IDX data.
"""

from __future__ import annotations

import dataclasses
import logging

from workloads.core import logs, storage
from workloads.core.settings import CommandConfig, non_negative, option, positive
from workloads.data import datasets
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
    digest_output: str | None = option(
        None,
        help="file (path or URL) to write the dataset's content digest to, atomically: one line of hex "
        "without a line break; none = do not write",
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
