"""Experiment tracking and the model registry (MLflow): every MLflow call of the workloads is here.

A search is one parent run; each trial is a child run under it, whose id is kept in the trial's
directory (``tracking.json``, beside ``checkpoints/``) so that a killed or failed trial that is trained
again continues the same run. The trial's chief logs per-step metrics itself, found through MLflow's
own ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` variables, which the launcher passes to every worker
as it passes the rest of the environment (and a training operator passes to a pod). Selection logs its
ranking to the parent run, registers the winner as a new version of the registered model and points
the ``champion`` alias at it; promotion serves the aliased version and tags it with what it became.

Without a tracking URI a command with a work directory logs to ``sqlite:///<workdir>/mlflow.db``, its
artifacts beside it. ``mlflow`` is imported where used: a process that does not track never loads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from workloads.core import logs, storage
from workloads.core.errors import WorkloadError
from workloads.core.settings import option

log = logging.getLogger(__name__)

SETTING = "--tracking-uri (or MLFLOW_TRACKING_URI)"
URI_VARIABLE = "MLFLOW_TRACKING_URI"
RUN_VARIABLE = "MLFLOW_RUN_ID"
OWNER_VARIABLE = "MLSTACK_OWN_RUN_ID"  # the run a train chief opened itself, and so ends itself
EXPERIMENT = "mlstack"
RUN_FILE = "tracking.json"  # in a trial's directory and a search's work directory
CHAMPION = "champion"  # the registry alias of the version to serve
MODEL_URL_TAG = "model.url"  # a trained run's model directory (any URL), copied to its registered version
FLUSH_EVERY = 50  # steps the chief buffers before one asynchronous log_batch
REACH_TIMEOUT_S = 5.0
SQLITE = "sqlite:///"  # a local store: a file MLflow creates, in a directory that must exist


class TrackingError(WorkloadError):
    """The tracking store cannot be used; names the setting that chose it."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{SETTING}: {problem}")


WORKDIR_DEFAULT = "sqlite:///<workdir>/mlflow.db (select: the URI its candidates were tracked with)"


def uri_option(otherwise: str = WORKDIR_DEFAULT) -> Any:
    """``--tracking-uri``, the same flag for every command that tracks; ``otherwise`` says what it does
    without one and without ``MLFLOW_TRACKING_URI``."""
    return option(
        None,
        help="MLflow tracking URI (http://host:5000, sqlite:///path.db); none = MLFLOW_TRACKING_URI, else "
        + otherwise,
    )


def off_option() -> Any:
    """``--no-tracking``: train and select without MLflow."""
    return option(False, help="record nothing in MLflow (said once in the log)")


@dataclasses.dataclass(frozen=True)
class Tracking:
    """Where runs are recorded: the tracking URI, and the artifact root of a local store."""

    uri: str
    artifacts: str | None = None  # only for a local (sqlite) store: where its runs' artifacts go

    @classmethod
    def at(cls, uri: str) -> Tracking:
        """The store at ``uri``; a local SQLite store keeps its artifacts beside its database, under
        ``mlartifacts/`` (MLflow's default would be ``./mlruns`` in whatever directory a command runs in)."""
        if uri.startswith(SQLITE):
            database = pathlib.Path(uri.removeprefix(SQLITE)).resolve()
            return cls(uri, (database.parent / "mlartifacts").as_uri())
        return cls(uri)

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        quiet_mlflow()
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def quiet_mlflow() -> None:
    """MLflow logs at INFO to stderr by default (a new SQLite store announces its tables); our commands
    keep stderr to their own records and errors, so only its warnings pass."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resolve(uri: str | None, off: bool, workdir: pathlib.Path | None) -> Tracking | None:
    """The tracking of a command: ``uri``, else ``MLFLOW_TRACKING_URI``, else a store under ``workdir``;
    None with ``off`` (said once) or with none of these. Fails with :class:`TrackingError` when a given
    store cannot be reached, before anything trains (the work directory's own store opens at first use)."""
    if off:
        log.warning("tracking off (--no-tracking): nothing of this run is recorded in MLflow")
        return None
    chosen = uri or os.environ.get(URI_VARIABLE, "").strip() or None
    if chosen is not None:
        tracking = Tracking.at(chosen)
    elif workdir is not None:
        # Opened (and its directory made) where first used, once the command's own checks have passed:
        # a command refused for its input leaves no work directory behind.
        return Tracking.at(f"{SQLITE}{workdir.resolve() / 'mlflow.db'}")
    else:
        return None
    check_reachable(tracking)
    return tracking


def check_reachable(tracking: Tracking) -> None:
    """A server's ``/health`` must answer; other stores are checked by opening the experiment."""
    if tracking.uri.startswith(("http://", "https://")):
        url = tracking.uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=REACH_TIMEOUT_S) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {tracking.uri} ({reason}); start it, fix the "
                "setting, or pass --no-tracking",
            ) from None
    experiment_id(tracking)


def experiment_id(tracking: Tracking) -> str:
    """The id of the ``mlstack`` experiment, created (with the local artifact root) if absent."""
    from mlflow.exceptions import MlflowException

    if tracking.uri.startswith(SQLITE):
        pathlib.Path(tracking.uri.removeprefix(SQLITE)).parent.mkdir(parents=True, exist_ok=True)
    client = tracking.client()
    try:
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(EXPERIMENT, artifact_location=tracking.artifacts)
    except MlflowException as error:
        raise TrackingError(f"MLflow at {tracking.uri} refused: {error.message}") from None


def code_version() -> str:
    """The git commit of the checkout the workloads run from, else the package's version."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        return subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from importlib import metadata

        try:
            return metadata.version("mlstack")
        except metadata.PackageNotFoundError:
            return "unknown"


def read_run_file(directory: str) -> dict[str, str] | None:
    """``{"run_id", "tracking_uri"}`` of the run recorded in ``directory``, or None."""
    try:
        return json.loads(storage.read_bytes(storage.join(directory, RUN_FILE)))
    except (FileNotFoundError, ValueError):
        return None


def _write_run_file(directory: str, tracking: Tracking, run_id: str) -> None:
    record = {"run_id": run_id, "tracking_uri": tracking.uri}
    storage.publish_bytes(storage.join(directory, RUN_FILE), json.dumps(record).encode())


def _resumable(client: Any, tracking: Tracking, directory: str, *, finished_too: bool) -> str | None:
    """The run recorded in ``directory`` if it is in this store (and unfinished, unless ``finished_too``)."""
    from mlflow.exceptions import MlflowException

    recorded = read_run_file(directory)
    if not recorded or recorded.get("tracking_uri") != tracking.uri:
        return None
    try:
        run = client.get_run(recorded["run_id"])
    except MlflowException:
        return None
    if run.info.status == "FINISHED" and not finished_too:
        return None
    if reason := run.data.tags.get("failure_reason"):  # kept as what the run went through
        client.set_tag(run.info.run_id, "resumed_after", reason)
        client.delete_tag(run.info.run_id, "failure_reason")
    client.update_run(run.info.run_id, status="RUNNING")
    return run.info.run_id


def _end(client: Any, run_id: str, error: BaseException | None) -> None:
    """Ends a run: FINISHED, FAILED (a :class:`WorkloadError`, its message as ``failure_reason``) or
    KILLED (interrupted: a signal, Ctrl-C)."""
    if error is None:
        client.set_terminated(run_id, "FINISHED")
        return
    killed = not isinstance(error, Exception)
    client.set_tag(run_id, "failure_reason", _reason(error)[:5000])
    client.set_terminated(run_id, "KILLED" if killed else "FAILED")


def _reason(error: BaseException) -> str:
    """A failure's message; for an interruption (the launcher's ``Interrupted``), the signal."""
    if isinstance(error, Exception):
        return str(error) or type(error).__name__
    signum = getattr(error, "signum", None)
    if signum is not None:
        return f"stopped by {signal.Signals(signum).name}"
    return f"interrupted ({type(error).__name__})"


class SearchRun:
    """The parent run of one search's work directory; its trials are child runs."""

    def __init__(self, tracking: Tracking, workdir: pathlib.Path, params: Mapping[str, Any]) -> None:
        self.tracking, self.client = tracking, tracking.client()
        experiment = experiment_id(tracking)
        directory = str(workdir)
        run_id = _resumable(self.client, tracking, directory, finished_too=True)
        if run_id is None:
            tags = {"mlflow.runName": f"search {workdir.name}", "code_version": code_version()}
            run_id = self.client.create_run(experiment, tags=tags).info.run_id
            self.client.log_batch(run_id, params=_params(params))
            _write_run_file(directory, tracking, run_id)
        self.experiment, self.run_id = experiment, run_id
        log.info("tracking the search", extra=logs.fields(tracking_uri=tracking.uri, run_id=run_id))

    def end(self, error: BaseException | None) -> None:
        _end(self.client, self.run_id, error)

    @contextlib.contextmanager
    def trial(
        self, name: str, directory: pathlib.Path, params: Mapping[str, Any], data: Mapping[str, str]
    ) -> Iterator[str]:
        """The trial's child run, resumed when its directory records an unfinished one; while it is
        open the trial's processes see it (``MLFLOW_RUN_ID``). Ends it FINISHED, FAILED or KILLED."""
        run_id = _resumable(self.client, self.tracking, str(directory), finished_too=False)
        if run_id is None:
            run_id = _new_run(self.client, self.experiment, name, params, data, parent=self.run_id)
            _write_run_file(str(directory), self.tracking, run_id)
        saved = {k: os.environ.get(k) for k in (URI_VARIABLE, RUN_VARIABLE)}
        os.environ.update({URI_VARIABLE: self.tracking.uri, RUN_VARIABLE: run_id})
        try:
            yield run_id
        except BaseException as error:
            _end(self.client, run_id, error)
            raise
        else:
            _end(self.client, run_id, None)
        finally:
            _restore(saved)

    def trained(self, run_id: str, model_dir: str, record: Mapping[str, Any]) -> None:
        """A trained trial's final metrics and model (:func:`log_trained`)."""
        log_trained(self.client, run_id, model_dir, record)


def _new_run(
    client: Any,
    experiment: str,
    name: str,
    params: Mapping[str, Any],
    data: Mapping[str, str],
    *,
    parent: str | None,
) -> str:
    """A trial's run (a child of ``parent``, a search's run): its params, code version and dataset input."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    tags = {
        "mlflow.runName": name,
        "code_version": code_version(),
        "dataset.digest": data["digest"],
        "dataset.url": data["url"],
    }
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(experiment, tags=tags).info.run_id
    client.log_batch(run_id, params=_params(params))
    dataset = Dataset(name="train", digest=data["digest"][:36], source_type="shards", source=data["url"])
    context = InputTag(key="mlflow.data.context", value="training")
    client.log_inputs(run_id, [DatasetInput(dataset, [context])])
    return run_id


def log_trained(client: Any, run_id: str, model_dir: str, record: Mapping[str, Any]) -> None:
    """A trained trial's final metrics, where its trained-model directory is (:data:`MODEL_URL_TAG`) and,
    for a local one, the model as artifacts (training.json, model.keras under ``model/``)."""
    from mlflow.entities import Metric, RunTag

    now, steps = int(time.time() * 1000), int(record["steps"])
    final = {"steps": steps, "wall_seconds": record["wall_seconds"]}
    if record["history"]:
        final["final_mean_loss"] = record["history"][-1]["mean_loss"]
    metrics = [Metric(k, float(v), now, steps) for k, v in final.items()]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(MODEL_URL_TAG, model_dir)])
    if storage.is_local(model_dir):
        client.log_artifacts(run_id, storage.local_path(model_dir), "model")


def trial_directory(model_dir: str) -> str:
    """Where the run of a trained-model directory (``<trial>/model``) is recorded: the directory above it."""
    return model_dir.rstrip("/").rsplit("/", 1)[0]


def opens_own_run(uri: str | None) -> bool:
    """Whether a ``train`` chief opens its run itself: a tracking URI and no run named by a launcher."""
    named = os.environ.get(RUN_VARIABLE, "").strip()
    return not named and bool(uri or os.environ.get(URI_VARIABLE, "").strip())


@contextlib.contextmanager
def train_run(
    uri: str | None, name: str, model_dir: str, params: Mapping[str, Any], data: Mapping[str, str]
) -> Iterator[str]:
    """The run a ``train`` chief opens itself (see :func:`opens_own_run`): when a tracking URI is set (``--tracking-uri`` or
    ``MLFLOW_TRACKING_URI``, as the workflow's trial jobs have it) and no launcher named a run (a search
    does). Recorded in :func:`trial_directory` of ``--output`` and continued by a restarted chief; the
    per-step metrics reach it through ``MLFLOW_RUN_ID`` (:class:`StepLogger`), and :func:`finish_own_run`
    logs the trained model and ends it. An error or an interruption ends it FAILED or KILLED."""
    chosen = uri or os.environ[URI_VARIABLE].strip()
    tracked = Tracking.at(chosen)
    check_reachable(tracked)
    client, directory = tracked.client(), trial_directory(model_dir)
    run_id = _resumable(client, tracked, directory, finished_too=False)
    if run_id is None:
        run_id = _new_run(client, experiment_id(tracked), name, params, data, parent=None)
        _write_run_file(directory, tracked, run_id)
    log.info("tracking the training", extra=logs.fields(tracking_uri=chosen, run_id=run_id))
    saved = {k: os.environ.get(k) for k in (URI_VARIABLE, RUN_VARIABLE, OWNER_VARIABLE)}
    os.environ.update({URI_VARIABLE: chosen, RUN_VARIABLE: run_id, OWNER_VARIABLE: run_id})
    try:
        yield run_id
    except BaseException as error:
        _end(client, run_id, error)
        raise
    else:
        if os.environ.get(OWNER_VARIABLE) == run_id:  # returned without a trained model
            _end(client, run_id, WorkloadError("training ended without writing a trained model"))
    finally:
        _restore(saved)


def finish_own_run(model_dir: str, record: Mapping[str, Any]) -> None:
    """The chief's trained model into the run it opened itself (:func:`train_run`), which ends FINISHED;
    nothing for a run a launcher owns (a search logs its trials' models itself)."""
    run_id = os.environ.pop(OWNER_VARIABLE, "")
    if not run_id:
        return
    client = Tracking.at(os.environ[URI_VARIABLE]).client()
    client.log_param(run_id, "world_size", record["world_size"])
    log_trained(client, run_id, model_dir, record)
    _end(client, run_id, None)


def _restore(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items()]


class StepLogger:
    """The chief's per-step metrics (loss, samples/s), buffered and sent every :data:`FLUSH_EVERY`
    steps as one asynchronous ``log_batch``, so that a step never waits on the tracking server; the
    last step's batch is sent and every pending one awaited (the trainer exits right after). A resumed
    run does not log again the steps it logged before its restart (those after its checkpoint are
    trained again)."""

    def __init__(self, client: Any, run_id: str, logged_through: int = 0) -> None:
        self.client, self.run_id = client, run_id
        self.logged_through = logged_through  # a resumed run has these steps already
        self.buffer: list[Any] = []
        self.pending: list[Any] = []

    @classmethod
    def for_worker(cls, is_chief: bool) -> StepLogger | None:
        """The chief's logger when the launcher named a run (``MLFLOW_RUN_ID``); None otherwise."""
        run_id = os.environ.get(RUN_VARIABLE, "").strip()
        if not is_chief or not run_id:
            return None
        client = Tracking.at(os.environ[URI_VARIABLE]).client()
        # Opens the store now (a SQLite store checks its schema: a second or so), not at the first flush
        # inside the training loop; a run id the store does not know fails here, before training.
        run = client.get_run(run_id)
        logged = client.get_metric_history(run_id, "loss") if "loss" in run.data.metrics else []
        return cls(client, run_id, max((metric.step for metric in logged), default=0))

    def step(self, step: int, loss: float, samples_per_second: float | None, *, last: bool) -> None:
        from mlflow.entities import Metric

        if step <= self.logged_through:  # logged before the restart this run resumed from
            return
        now = int(time.time() * 1000)
        self.buffer.append(Metric("loss", float(loss), now, step))
        if samples_per_second is not None:
            self.buffer.append(Metric("samples_per_second", samples_per_second, now, step))
        if last or len(self.buffer) >= 2 * FLUSH_EVERY:
            self.flush(wait=last)

    def flush(self, *, wait: bool) -> None:
        if self.buffer:
            self.pending.append(self.client.log_batch(self.run_id, metrics=self.buffer, synchronous=False))
            self.buffer = []
        if wait:
            for operation in self.pending:
                operation.wait()
            self.pending = []


def run_of_model(model_dir: str) -> dict[str, str] | None:
    """The run a trained-model directory (``<trial>/model``) was trained in: its trial's run file."""
    return read_run_file(trial_directory(model_dir))


def register_champion(tracking: Tracking, name: str, run_id: str, ranking: Mapping[str, str]) -> int:
    """Logs the ranking (``{file name: text}``) to the search's run, registers ``run_id``'s model as a new
    version of ``name`` (unless one of it is registered already) and points :data:`CHAMPION` at it;
    returns the version. A name the registry refuses fails before any version exists."""
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    run = client.get_run(run_id)
    parent = run.data.tags.get("mlflow.parentRunId", run_id)
    for file_name, text in ranking.items():
        client.log_text(parent, text, f"selection/{file_name}")
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise registry_error("--model-name", error) from None
    version = _version_of_run(client, name, run_id)
    if version is None:
        lineage = ("dataset.", MODEL_URL_TAG, "code_version")
        tags = {k: v for k, v in run.data.tags.items() if k.startswith(lineage)}
        tags["run_id"] = run_id
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags
        )
    client.set_registered_model_alias(name, CHAMPION, version.version)
    log.info(
        "registered the winner",
        extra=logs.fields(model=name, version=version.version, alias=CHAMPION, run_id=run_id),
    )
    return int(version.version)


def _version_of_run(client: Any, name: str, run_id: str) -> Any | None:
    """The newest version of ``name`` registered from ``run_id``: a selection run again over the same
    trained winner (a retried workflow step, ``--reuse-promoted``) points the alias at it again."""
    found = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    return max(found, key=lambda v: int(v.version), default=None)


def champion_version(tracking: Tracking, name: str, setting: str) -> Any:
    """The version of registered model ``name`` that :data:`CHAMPION` points at; one clear error naming
    ``setting`` (the flag that named it) when the model or the alias is missing."""
    from mlflow.exceptions import MlflowException

    try:
        return tracking.client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        raise WorkloadError(
            f"{setting}: no version of registered model {name!r} is aliased {CHAMPION!r} in MLflow at "
            f"{tracking.uri} ({error.message}); register one with `select` and tracking on"
        ) from None


def champion_model(tracking: Tracking, name: str, setting: str) -> tuple[int, str]:
    """The champion version of ``name`` and its trained-model directory (:data:`MODEL_URL_TAG`)."""
    version = champion_version(tracking, name, setting)
    url = version.tags.get(MODEL_URL_TAG)
    if not url:
        raise WorkloadError(
            f"{setting}: version {version.version} of {name!r} does not say where its trained model is "
            f"(tag {MODEL_URL_TAG}); register it again with `select`"
        )
    return int(version.version), url


def tag_served(tracking: Tracking, name: str, version: int, serving_version: int, url: str) -> None:
    """Lineage from the registry to TF Serving: the version number and directory it is served as."""
    client = tracking.client()
    client.set_model_version_tag(name, str(version), "serving.version", str(serving_version))
    client.set_model_version_tag(name, str(version), "serving.url", url)


def ui_command(tracking: Tracking) -> str:
    """The one command that opens the MLflow UI on a local store."""
    return f"{sys.executable} -m mlflow ui --backend-store-uri {tracking.uri} --port 5000"


def registry_error(setting: str, error: Exception) -> WorkloadError:
    message = getattr(error, "message", str(error))
    return WorkloadError(f"{setting}: the MLflow registry refused it: {message}")
