"""Synchronous data-parallel training with TensorFlow's MultiWorkerMirroredStrategy, custom loop.

Why a custom loop: Keras 3 ``model.fit`` under MultiWorkerMirroredStrategy fails with TensorFlow 2.21
(a PerReplica-to-Tensor error, a known upstream issue), so each step is ``strategy.run`` on every
replica and ``strategy.reduce`` of the loss, fed by a distributed dataset built per worker from the
shared data layer (each worker its own disjoint share, the same number of steps on every worker).

Fault tolerance: the run resumes from the latest committed checkpoint (model, optimizer, step and
data position) whenever it starts, so a restarted job continues instead of starting over. Every
worker restores; every worker takes part in each save as TensorFlow's multi-worker guide requires,
but only the chief's copy is committed (the others write to a scratch directory and delete it).
Collectives have a timeout, and a lost peer surfaces as :class:`PeerLostError` (exit 138,
retryable), so the job controller restarts the group instead of waiting forever. Only the chief
writes the trained model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import numpy as np

from workloads import models
from workloads.core import logs, storage
from workloads.core.errors import ClusterConfigError
from workloads.data.sampling import uneven_split
from workloads.training import cluster, runs, tf_runtime, watchdog
from workloads.training.config import TrainConfig
from workloads.training.metrics import TrainingMetrics

log = logging.getLogger(__name__)
FRAMEWORK = "tensorflow"
STRATEGY = "multi-worker-mirrored"
PAYLOAD = "tf/model"  # tf.train.Checkpoint prefix inside a checkpoint directory


def train(config: TrainConfig) -> int:
    watchdog.exit_on_signals()  # TensorFlow blocks the main thread and replaces the SIGTERM handler
    info = cluster.detect(os.environ)
    logs.bind(rank=info.rank, role=info.task_type)
    log.info("cluster: %s", info.describe(), extra=logs.fields(world_size=info.world_size))
    if info.has_parameter_servers:
        raise ClusterConfigError(
            "TF_CONFIG lists ps tasks, which MultiWorkerMirroredStrategy does not use; "
            "run with --strategy parameter-server or remove the ps replicas"
        )
    if info.task_type == "evaluator":
        log.info("evaluator task: nothing to do (model selection evaluates on the held-out split)")
        return 0
    if problem := uneven_split(config.batch_size, info.world_size, "training replicas"):
        raise ClusterConfigError(f"--batch-size: {problem}")
    return runs.run_with_metrics(
        config, FRAMEWORK, info.rank, lambda metrics: _Trainer(config, info, metrics)
    )


class _Trainer:
    def __init__(self, config: TrainConfig, info: cluster.ClusterInfo, metrics: TrainingMetrics) -> None:
        self.config = config
        self.info = info
        self.metrics = metrics
        self.started = time.monotonic()
        self.input_failures: list[BaseException] = []  # raised by this worker's batch generator

    def run(self) -> int:
        tf = self.tf = tf_runtime.import_tensorflow(self.config.threads)
        with tf_runtime.peer_loss_is_retryable(tf, "a peer worker"):
            return self._run()

    def _run(self) -> int:
        start_step = self._set_up()
        dataset = self._distribute_dataset(start_step)
        self.distributed_train_step = self._distributed_train_step_function()
        self.average_statistics = self._averaging_function()
        step, history = self._train(start_step, iter(dataset))
        self._finish(start_step, step, history)
        return 0

    def _set_up(self) -> int:
        """Strategy, this worker's data, model, optimizer, the checkpoint restored; returns the start step."""
        tf, config = self.tf, self.config
        data_url, data = runs.open_training_data(config)
        self.strategy = self._make_strategy()
        self.batches, self.total_steps = runs.worker_batches(
            config, data_url, data, rank=self.info.rank, world_size=self.info.world_size
        )
        self.model, self.optimizer = self._build_model()
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.store = runs.checkpoint_store(config)
        self.identity = runs.checkpoint_identity(FRAMEWORK, config, data.manifest)
        start_step = self._restore()
        self.metrics.record_resume(start_step)
        return start_step

    def _make_strategy(self) -> Any:
        """MultiWorkerMirroredStrategy with timed collectives, checked against the workers and batch size."""
        tf, config, world_size = self.tf, self.config, self.info.world_size
        self._configure_coordination()
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=config.collective_timeout)
        with tf_runtime.joining(tf, self.info, config.startup_timeout):
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        if strategy.num_replicas_in_sync % world_size:
            raise ClusterConfigError(
                f"{strategy.num_replicas_in_sync} replicas in sync for {world_size} workers: "
                "each worker must have the same number of devices"
            )
        replicas = strategy.num_replicas_in_sync
        if problem := uneven_split(config.batch_size, replicas, "replicas (devices across all workers)"):
            raise ClusterConfigError(f"--batch-size: {problem}")
        return strategy

    def _build_model(self) -> tuple[Any, Any]:
        """The seeded model and its built Adam optimizer, mirrored on every replica."""
        with self.strategy.scope():
            model = models.build_model(self.config.model, seed=self.config.seed)
            import keras

            optimizer = keras.optimizers.Adam(self.config.learning_rate)
            optimizer.build(model.trainable_variables)
        return model, optimizer

    def _distribute_dataset(self, start_step: int) -> Any:
        """This worker's batches from ``start_step`` on, one element per local replica and step."""
        batches, total_steps, info = self.batches, self.total_steps, self.info
        replicas_per_worker = self.strategy.num_replicas_in_sync // info.world_size

        def worker_dataset(context: Any):
            if (context.input_pipeline_id, context.num_input_pipelines) != (info.rank, info.world_size):
                raise ClusterConfigError(
                    f"strategy says input pipeline {context.input_pipeline_id} of {context.num_input_pipelines}, "
                    f"TF_CONFIG says rank {info.rank} of {info.world_size}"
                )
            from workloads.data.tf_adapter import tf_batches

            # One element per local replica: a worker batch split into per-replica batches, in order.
            # A failure while planning the input (a corrupt shard) is raised after TensorFlow's error.
            failed = self.input_failures.append
            return tf_batches(batches, start_step, total_steps, split=replicas_per_worker, on_failure=failed)

        return self.strategy.distribute_datasets_from_function(worker_dataset)

    def _train(self, start_step: int, iterator: Any) -> tuple[int, dict[int, list[float]]]:
        """The epochs from ``start_step`` on; returns the last step and each epoch's step losses.

        A failure of this worker's batch generator reaches the loop as TensorFlow's error; it is
        raised as itself.
        """
        step = start_step
        with runs.progress_bar(self.config, self.total_steps, start_step, is_chief=self.info.is_chief) as bar:
            report = runs.StepReporter(self.metrics, bar, self.total_steps, self.config.log_every)
            try:
                for epoch in range(start_step // self.batches.steps_per_epoch, self.config.epochs):
                    step = self._train_one_epoch(epoch, step, iterator, report)
            except self.tf.errors.OpError:
                if self.input_failures:
                    raise self.input_failures[0] from None
                raise
        return step, report.history

    def _train_one_epoch(self, epoch: int, step: int, iterator: Any, report: runs.StepReporter) -> int:
        """The steps of ``epoch`` from global ``step`` on, checkpointed on schedule; returns the next step."""
        end_of_epoch = (epoch + 1) * self.batches.steps_per_epoch
        while step < end_of_epoch:
            began = time.perf_counter()
            loss = float(self.distributed_train_step(iterator))
            elapsed = time.perf_counter() - began
            step += 1
            report.step_done(step, epoch, loss, self.batches.per_worker_batch, elapsed)
            if self.store and runs.checkpoint_due(self.config, step, self.total_steps):
                self._save(step)
        return step

    def _finish(self, start_step: int, step: int, history: dict[int, list[float]]) -> None:
        """Statistics averaged, the chief writes the model, every worker meets at a barrier and leaves."""
        self.average_statistics()
        weights = [np.asarray(w) for w in self.model.weights]
        digest = runs.weights_digest(weights)
        log.info("final weights", extra=logs.fields(step=step, weights_sha256=digest))
        if self.info.is_chief:
            self._write_model(start_step, step, history, digest)
        barrier = self._barrier_function()
        barrier()  # every worker is past its last write (the chief's model included)
        if self.info.world_size > 1:
            self._leave(barrier)

    def _barrier_function(self):
        tf, strategy = self.tf, self.strategy

        @tf.function
        def barrier():
            return strategy.reduce(
                tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None
            )

        return barrier

    def _leave(self, barrier) -> None:
        """Ends a finished multi-worker process at once.

        TensorFlow's own teardown of a multi-worker process waits on its coordination service
        (heartbeats, a shutdown barrier hosted by the chief) and takes from seconds to a minute
        depending on which worker leaves first. Nothing is left to do here: the first barrier proved
        every worker finished its work; a second one tells each worker the others know that, and may
        fail harmlessly if a faster peer has already gone. Then logs are flushed and the process ends.
        """
        with contextlib.suppress(self.tf.errors.OpError):
            barrier()
        log.info("all workers done; exiting", extra=logs.fields(rank=self.info.rank))
        runs.exit_now()

    def _configure_coordination(self) -> None:
        """Timeouts of TensorFlow's coordination service, which MWMS uses to watch its peers.

        There is no public API for these; MWMS itself calls the same ``context`` method with the
        defaults (no registration deadline, 10 s heartbeats), so this runs first and sets ours:
        a peer that stops sending heartbeats is declared dead after ``--heartbeat-timeout``, a
        worker whose peers never show up gives up after ``--startup-timeout``, and the shutdown
        barrier is short, which also makes a finished job exit in about a second instead of ten.
        TensorFlow is pinned (pyproject.toml); the multi-worker tests exercise this path.
        """
        if self.info.source != "tf_config":
            return
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context

        jobs = [
            (job, len(self.info.cluster[job])) for job in ("chief", "worker") if self.info.cluster.get(job)
        ]
        leader = (
            "/job:chief/replica:0/task:0"
            if self.info.cluster.get("chief")
            else "/job:worker/replica:0/task:0"
        )
        context.context().configure_coordination_service(
            service_type="standalone",
            service_leader=leader,
            enable_health_check=True,
            cluster_register_timeout_in_ms=int(self.config.startup_timeout * 1000),
            heartbeat_timeout_in_ms=int(self.config.heartbeat_timeout * 1000),
            shutdown_barrier_timeout_in_ms=int(self.config.heartbeat_timeout * 1000),
            coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=n, num_tasks=k) for n, k in jobs],
        )
        # Without this only a worker bounds its registration; the leader would wait for the others ~11 min.
        context.context().coordination_service.cluster_register_with_barrier = True

    def _distributed_train_step_function(self):
        """``distributed_train_step(iterator)``: ``train_step`` on every replica, the loss summed.

        Each replica's loss is scaled by the global batch size, so the sum is the global mean loss.
        """
        tf, strategy, model, optimizer = self.tf, self.strategy, self.model, self.optimizer
        import keras

        global_batch = self.config.batch_size

        def train_step(images, labels):
            with tf.GradientTape() as tape:
                scores = model(tf.cast(images, tf.float32), training=True)
                per_example = keras.losses.sparse_categorical_crossentropy(labels, scores)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        @tf.function
        def distributed_train_step(iterator):
            images, labels = next(iterator)
            per_replica = strategy.run(train_step, args=(images, labels))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        return distributed_train_step

    def _averaging_function(self):
        """Averages the batch-norm moving statistics across replicas (one all-reduce), so every
        replica, every checkpoint and the saved model hold the same values."""
        tf, strategy = self.tf, self.strategy
        statistics = models.moving_statistics(self.model)

        @tf.function
        def average():
            def replica_fn():
                context = tf.distribute.get_replica_context()
                for variable in statistics:
                    variable.assign(
                        context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(variable.value))
                    )

            strategy.run(replica_fn)

        return average if statistics else (lambda: None)

    def _restore(self) -> int:
        """Every worker restores the latest checkpoint, if any; returns its step (0 for a fresh start)."""
        store = self.store
        state = runs.latest_checkpoint(
            store, self.identity, total_steps=self.total_steps, is_chief=self.info.is_chief
        )
        if state is None:
            return 0
        with store.open(state) as directory:
            where = storage.join(store.url, state.path)
            tf_runtime.read_checkpoint(self.tf, self.checkpoint, directory, PAYLOAD, where)
        self.metrics.record_checkpoint()
        runs.log_resumed(store, state, self.batches)
        return state.step

    def _save(self, step: int) -> None:
        write = tf_runtime.checkpoint_writer(self.checkpoint, PAYLOAD)
        self.average_statistics()
        epoch, batch = self.batches.position(step)
        if self.info.is_chief:
            self.store.save(step, epoch, batch, write, extra=self.identity)
        else:
            self.store.save_scratch(write)
        self.metrics.record_checkpoint()  # every worker takes part in the save, so each reports it

    def _write_model(self, start_step: int, step: int, history: dict[int, list[float]], digest: str) -> None:
        runs.write_trained_model(
            self.config,
            self.model,
            framework=FRAMEWORK,
            strategy=STRATEGY,
            world_size=self.info.world_size,
            start_step=start_step,
            step=step,
            history=runs.epoch_history(history),
            digest=digest,
            started=self.started,
            identity=self.identity,
        )
