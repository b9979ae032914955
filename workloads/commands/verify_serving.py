"""Check that the model server serves what select promoted: wait (up to --wait seconds) until it reports
the promoted version AVAILABLE, send that version (by number) the first --records held-out records of
--data, and compare the accuracy of its answers with the promoted accuracy.

When --records covers the whole held-out split the two must agree within --tolerance; a smaller sample
must agree within 4 binomial standard errors of the promoted accuracy plus --tolerance. The summary
line says which check was made. The Argo workflow runs this after its select step, with --promoted the
JSON that select --promoted-output wrote.

Example:
  python -m workloads verify-serving --server-url http://tf-serving:8501 --data hdfs://nn/datasets/fm \\
      --promoted "$(cat /tmp/outputs/promoted.json)"
"""

from __future__ import annotations

import dataclasses

from workloads.commands.select import fraction, held_out
from workloads.core import storage
from workloads.core.settings import ConfigError, non_negative, option, positive
from workloads.data.shards import ShardCache, ShardSet
from workloads.serving.client_options import ClientOptions
from workloads.workflow import serving_verification
from workloads.workflow.selection import Promotion

HELP = "wait until the model server serves the promoted version, check its answers on held-out data"


# kw_only: the required --promoted and --data follow the client options, which all have defaults.
@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(ClientOptions):
    promoted: str = option(
        help="what select promoted: the JSON of its --promoted-output (model_name, version, accuracy ...)",
        metavar="JSON",
    )
    data: str = option(help="dataset directory (its test/ split is used) or a held-out shard directory")
    records: int = option(
        200, help="held-out records to send, the first N (all of them: the strict check)", check=positive
    )
    wait: float = option(
        600.0, help="seconds to wait for the server to report the version AVAILABLE", check=non_negative
    )
    tolerance: float = option(
        0.02,
        help="how far the served accuracy may be from the promoted one (0..1), on top of "
        "the sampling error of a sample",
        check=fraction,
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")

    def validate(self) -> None:
        super().validate()
        if self.version is not None or self.label is not None:
            raise ConfigError(
                "--version" if self.version is not None else "--label",
                "verify-serving asks the version --promoted names; leave --version and --label out",
            )
        promotion = self.promotion()
        if promotion.model_name != self.model_name:
            raise ConfigError(
                "--promoted", f"names model {promotion.model_name!r}, but --model-name is {self.model_name!r}"
            )

    def promotion(self) -> Promotion:
        try:
            return Promotion.parse(self.promoted)
        except ValueError as error:
            raise ConfigError("--promoted", str(error)) from None


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    test_data = ShardSet.open(held_out(config.data), cache=ShardCache())
    with config.make_client() as client:
        summary = serving_verification.verify(
            client,
            config.promotion(),
            test_data,
            records=config.records,
            wait_s=config.wait,
            tolerance=config.tolerance,
            signature=config.signature,
        )
    print(summary, flush=True)
    return 0
