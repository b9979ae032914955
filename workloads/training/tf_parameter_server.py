"""Asynchronous training with TensorFlow's ParameterServerStrategy: the parameter-server pattern.

The job is a TFJob with ps replicas (``TF_CONFIG`` lists ``chief``, ``worker`` and ``ps`` tasks):

- **ps** tasks hold the model's variables and the optimizer's state; **workers** run the training
  steps. Both only run a ``tf.distribute.Server`` until the job controller stops them.
- the **chief** is the coordinator: it builds the strategy and a ``ClusterCoordinator``, reads the
  data, schedules steps, checkpoints and writes the trained model. Each scheduled step runs on
  whichever worker is free: it reads the current variables from the ps tasks, computes gradients on
  its batch and pushes an update, without waiting for the other workers (asynchronous training).

**Why not Keras' own training under this strategy.** Keras 3 does not support
ParameterServerStrategy ("Parameter server training is not supported in Keras 3", keras-team/keras
#18624): building a Keras 3 model and optimizer in the strategy's scope happens to run on
single-device workers, but its optimizer variables lack the aggregation the strategy requires with
several devices per worker. tf-keras (``TF_USE_LEGACY_KERAS=1``) supports it, but would need a second
definition of every model in ``tf_keras`` and a weight transfer back to Keras 3 for ``model.keras``.
So the loop is written over plain ``tf.Variable``\\ s, which the strategy places on the ps tasks, and
the shared Keras 3 model is used as a pure function of them (``stateless_call``, a public Keras 3
API). The ps tasks apply each gradient with TensorFlow's fused Adam kernel under a lock
(``ResourceApplyAdam(use_locking=True)``, slots colocated with their variable), so concurrent pushes
from several workers compose instead of overwriting each other. At the end the values are copied
into the Keras model, which is saved like any other: the trained-model directory is the same
contract as every trainer's.

**Data**: the chief reads the shards with the same :class:`WorkerBatches` every trainer uses (one
reader, world size 1: each step is one global batch) and sends each batch with the step it
schedules, so workers need no access to the data and the data position of a checkpoint is exact.
For 28x28 images that is 50 kB a step; a model with much larger inputs would give each worker its
own dataset (``create_per_worker_dataset``) instead.

**Checkpoints**: every ``--checkpoint-every`` steps the chief waits for the scheduled steps
(``coordinator.join``) and commits the ps variables with the shared checkpoint protocol; a
restarted job restores them into the (new) ps variables and continues at the recorded step. A lost
worker is absorbed by the coordinator (its steps are rescheduled); a lost ps task ends the chief with
exit code 138 so the job controller restarts the group.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from workloads import models
from workloads.core import logs, storage, tracking
from workloads.core.errors import ClusterConfigError
from workloads.training import cluster, runs, tf_runtime, watchdog
from workloads.training.config import TrainConfig
from workloads.training.metrics import TrainingMetrics

log = logging.getLogger(__name__)
FRAMEWORK = "tensorflow"
STRATEGY = "parameter-server"
PAYLOAD = "tf/parameter-server"  # tf.train.Checkpoint prefix inside a checkpoint directory
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7  # Keras' Adam defaults


def train(config: TrainConfig) -> int:
    watchdog.exit_on_signals()  # the tasks wait in TensorFlow's C++, where Python's handlers do not run
    info = cluster.detect(os.environ)
    logs.bind(rank=info.rank, role=info.task_type)
    log.info("cluster: %s", info.describe(), extra=logs.fields(task=info.task_type, index=info.task_index))
    _check_cluster(info)
    if info.task_type == "evaluator":
        log.info("evaluator task: nothing to do (model selection evaluates on the held-out split)")
        return 0
    if info.task_type in ("worker", "ps"):
        return _serve(info, config)
    return runs.run_with_metrics(config, FRAMEWORK, 0, lambda metrics: _Coordinator(config, info, metrics))


def _check_cluster(info: cluster.ClusterInfo) -> None:
    if info.source != "tf_config":
        raise ClusterConfigError(
            "--strategy parameter-server needs a TF_CONFIG with chief, worker and ps tasks (a TFJob with "
            "ps replicas); `python -m workloads train` without TF_CONFIG starts such a cluster here"
        )
    missing = [task for task in ("chief", "worker", "ps") if not info.cluster.get(task)]
    if missing:
        raise ClusterConfigError(
            f"TF_CONFIG.cluster has no {' and no '.join(missing)} task: parameter-server training needs a "
            "chief (the coordinator), at least one worker and at least one ps"
        )


def _serve(info: cluster.ClusterInfo, config: TrainConfig) -> int:
    """A worker or ps task: serve the chief's requests until the job controller stops this process."""
    tf = tf_runtime.import_tensorflow(config.threads)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(
        resolver.cluster_spec(),
        job_name=info.task_type,
        task_index=info.task_index,
        protocol="grpc",
        start=True,
    )
    log.info(
        "%s %d serving; the chief coordinates the training",
        info.task_type,
        info.task_index,
        extra=logs.fields(target=server.target),
    )
    server.join()
    return 0


class _ServerState:
    """The training state on the ps tasks: the model's variables, Adam's slots and the step count."""

    def __init__(self, tf: Any, strategy: Any, model: Any) -> None:
        self.tf = tf
        with strategy.scope():
            self.trainable = [tf.Variable(v.numpy(), name=_name(v)) for v in model.trainable_variables]
            self.non_trainable = [
                tf.Variable(v.numpy(), name=_name(v), trainable=False) for v in model.non_trainable_variables
            ]
            self.first_moments, self.second_moments = [], []
            for variable in self.trainable:
                with strategy.extended.colocate_vars_with(
                    variable
                ):  # the fused Adam kernel needs them together
                    self.first_moments.append(tf.Variable(tf.zeros_like(variable), trainable=False))
                    self.second_moments.append(tf.Variable(tf.zeros_like(variable), trainable=False))
            self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.checkpoint = tf.train.Checkpoint(
            trainable=self.trainable,
            non_trainable=self.non_trainable,
            first_moments=self.first_moments,
            second_moments=self.second_moments,
            iterations=self.iterations,
        )

    def apply_adam(self, gradients: list[Any], learning_rate: float) -> None:
        """One Adam update of every variable, applied on its ps task under a lock."""
        tf = self.tf
        step = tf.cast(self.iterations.assign_add(1), tf.float32)
        beta_1_power, beta_2_power = ADAM_BETA_1**step, ADAM_BETA_2**step
        for variable, m, v, gradient in zip(
            self.trainable, self.first_moments, self.second_moments, gradients, strict=True
        ):
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=tf.constant(learning_rate, tf.float32),
                beta1=tf.constant(ADAM_BETA_1, tf.float32),
                beta2=tf.constant(ADAM_BETA_2, tf.float32),
                epsilon=tf.constant(ADAM_EPSILON, tf.float32),
                grad=gradient,
                use_locking=True,
            )

    def copy_into(self, model: Any) -> None:
        for target, source in zip(model.trainable_variables, self.trainable, strict=True):
            target.assign(source.read_value())
        for target, source in zip(model.non_trainable_variables, self.non_trainable, strict=True):
            target.assign(source.read_value())


def _name(variable: Any) -> str:
    return variable.path.replace("/", "_")


class _Coordinator:
    def __init__(self, config: TrainConfig, info: cluster.ClusterInfo, metrics: TrainingMetrics) -> None:
        self.config = config
        self.info = info
        self.metrics = metrics
        self.started = time.monotonic()
        self.workers = len(info.cluster["worker"])
        self.tracked = tracking.StepLogger.for_worker(is_chief=True)  # the coordinator is the chief

    def run(self) -> int:
        tf = self.tf = tf_runtime.import_tensorflow(self.config.threads)
        # The coordinator logs every wait for scheduled steps at INFO; ours say what matters.
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
        with tf_runtime.peer_loss_is_retryable(tf, "a ps or worker task"):
            return self._run()

    def _run(self) -> int:
        start_step = self._set_up()
        self.step_fn = self._step_function()
        step, losses = self._train(start_step)
        self._finish(start_step, step, losses)
        return 0

    def _set_up(self) -> int:
        """The data, the strategy and its coordinator, the variables on the ps tasks, the checkpoint
        restored into them; returns the step to start at."""
        tf, config = self.tf, self.config
        data_url, data = runs.open_training_data(config)
        self.batches, self.total_steps = runs.worker_batches(config, data_url, data)
        self.strategy, self.coordinator = self._make_coordinator()
        self.model = models.build_model(config.model, seed=config.seed)  # the chief's copy: a template
        self.state = _ServerState(tf, self.strategy, self.model)
        self.store = runs.checkpoint_store(config)
        self.identity = runs.checkpoint_identity(FRAMEWORK, config, data.manifest)
        start_step = self._restore()
        self.metrics.record_resume(start_step)
        return start_step

    def _make_coordinator(self) -> tuple[Any, Any]:
        """ParameterServerStrategy over TF_CONFIG's cluster, and the ClusterCoordinator scheduling on it."""
        tf = self.tf
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        with tf_runtime.joining(tf, self.info, self.config.startup_timeout):  # TF has no timeout here
            strategy = tf.distribute.ParameterServerStrategy(resolver)
        coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
        log.info(
            "ParameterServerStrategy: %d worker(s), %d ps task(s)",
            self.workers,
            len(self.info.cluster["ps"]),
            extra=logs.fields(workers=self.workers, ps=len(self.info.cluster["ps"])),
        )
        return strategy, coordinator

    def _train(self, start_step: int) -> tuple[int, dict[int, list[float]]]:
        """Schedules every step from ``start_step`` on; returns the last step and each epoch's step losses.

        The scheduled steps are joined every ``--log-every`` steps and at each checkpoint: their
        losses are fetched and reported, and the checkpoint is written once all of them are applied.
        """
        tf, config = self.tf, self.config
        losses: dict[int, list[float]] = {}
        pending: list[tuple[int, Any]] = []
        step = start_step
        chunk_started = time.perf_counter()
        with runs.progress_bar(config, self.total_steps, start_step) as bar:
            for batch in self.batches.steps(start_step, self.total_steps):
                images, labels = tf.constant(batch.images), tf.constant(batch.labels)
                pending.append((step, self.coordinator.schedule(self.step_fn, args=(images, labels))))
                step += 1
                boundary = runs.checkpoint_due(config, step, self.total_steps)
                if not boundary and step % config.log_every:
                    continue
                self.coordinator.join()  # every scheduled step has been applied on the ps tasks
                self._report(step, pending, time.perf_counter() - chunk_started, losses, bar)
                pending = []
                if self.store and boundary:
                    self._save(step)
                chunk_started = time.perf_counter()
        return step, losses

    def _report(
        self,
        step: int,
        pending: list[tuple[int, Any]],
        elapsed: float,
        losses: dict[int, list[float]],
        bar: Any,
    ) -> None:
        """The joined steps' losses into ``losses`` and the metrics; the bar moved, a progress line logged."""
        batch_size, total_steps = self.config.batch_size, self.total_steps
        rate = batch_size * len(pending) / elapsed if elapsed > 0 else None
        for done, remote in pending:
            loss = float(remote.fetch())
            epoch, _ = self.batches.position(done)
            losses.setdefault(epoch, []).append(loss)
            self.metrics.record_step(loss, batch_size, elapsed / len(pending))
            self.metrics.record_epoch(epoch)
            if self.tracked is not None:  # steps count from 1, as the synchronous trainers' do
                self.tracked.step(done + 1, loss, rate, last=done + 1 == total_steps)
        bar.update(len(pending))
        bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
        runs.log_step(step, total_steps, epoch, loss, batch_size * len(pending), elapsed)

    def _finish(self, start_step: int, step: int, losses: dict[int, list[float]]) -> None:
        """The ps variables copied into the model, which the chief writes; then it leaves."""
        model = self.model
        self.state.copy_into(model)
        digest = runs.weights_digest(np.asarray(w) for w in model.weights)
        log.info("final weights", extra=logs.fields(step=step, weights_sha256=digest))
        runs.write_trained_model(
            self.config,
            model,
            framework=FRAMEWORK,
            strategy=STRATEGY,
            world_size=self.workers,
            start_step=start_step,
            step=step,
            history=runs.epoch_history(losses),
            digest=digest,
            started=self.started,
            identity=self.identity,
            extra={"ps_tasks": len(self.info.cluster["ps"])},
        )
        self._leave()

    def _step_function(self):
        """``step_fn(images, labels)``, scheduled on whichever worker is free: ``replica_fn`` computes
        the gradients of one batch from the current ps variables and pushes an Adam update."""
        tf, strategy, model, state = self.tf, self.strategy, self.model, self.state
        import keras

        learning_rate = self.config.learning_rate

        def replica_fn(images, labels):
            trainable = [v.read_value() for v in state.trainable]
            non_trainable = [v.read_value() for v in state.non_trainable]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                scores, updated = model.stateless_call(
                    trainable, non_trainable, tf.cast(images, tf.float32), training=True
                )
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, scores))
            state.apply_adam(tape.gradient(loss, trainable), learning_rate)
            for variable, value in zip(state.non_trainable, updated, strict=True):
                variable.assign(value)  # batch-norm statistics, dropout's seed: the last writer wins
            return loss

        @tf.function
        def step_fn(images, labels):
            return strategy.run(replica_fn, args=(images, labels))

        return step_fn

    def _restore(self) -> int:
        """The latest checkpoint, if any, restored into the ps variables; returns its step (else 0)."""
        store = self.store
        latest = runs.latest_checkpoint(store, self.identity, total_steps=self.total_steps, is_chief=True)
        if latest is None:
            return 0
        with store.open(latest) as directory:
            where = storage.join(store.url, latest.path)
            tf_runtime.read_checkpoint(self.tf, self.state.checkpoint, directory, PAYLOAD, where)
        self.metrics.record_checkpoint()
        runs.log_resumed(store, latest, self.batches)
        return latest.step

    def _save(self, step: int) -> None:
        write = tf_runtime.checkpoint_writer(self.state.checkpoint, PAYLOAD)
        epoch, batch = self.batches.position(step)
        self.store.save(step, epoch, batch, write, extra=self.identity)
        self.metrics.record_checkpoint()

    def _leave(self) -> None:
        """Ends the chief at once: the coordinator's threads would keep polling the other tasks,
        which the job controller stops when the chief has succeeded."""
        log.info("training done; the job controller stops the ps and worker tasks")
        runs.exit_now()
