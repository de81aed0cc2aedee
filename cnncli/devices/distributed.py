"""Training on several machines with Keras 3: a small `fit` of our own.

Keras 3.15's `model.fit` fails under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585: PerReplica values in its symbolic build, then
"Invalid reduction dimension" when it reduces the metrics). `fit` here is the
loop around it, no more: each replica runs Keras' own ``model.train_step`` on its
slice of each batch with ``strategy.run`` (so the loss is the mean of the replicas'
losses, each the mean over its slice's images with weight, `compile.LOSS_REDUCTION`:
the global batch's mean, except that an image which could not be decoded, weight 0,
makes its own slice's other images count a little more; the gradients are summed over
all replicas by the optimizer, mixed precision and regularisation work as in
`model.fit`), and the metrics are read as values
reduced over all replicas. It calls its callbacks as `model.fit` does, so
`train.RunCallback` works unchanged.

Data: the batches are of the *global* batch size (their order is a function of seed
and epoch, see `pipeline.training_batches`); each worker reads and decodes only its
own replicas' part of each (`Parts`: the work is divided, not multiplied), and
replica k of n trains on slice k of each batch. A run therefore sees the same
images in the same order whatever the number of workers, and ``--resume``
restarts exactly where the backup was taken.

Outputs: every worker runs the same callbacks (reading a metric can be a
collective operation that all workers must join), but only the chief writes the
run folder; the others write theirs into a temporary folder (`worker_run_dir`).

>>> placement = devices.setup("auto", "auto", multiworker=True)   # doctest: +SKIP
>>> strategy = devices.strategy(placement)                         # doctest: +SKIP
>>> fit(model, strategy, batches, epochs=3, steps_per_epoch=100,
...     validation_data=val, callbacks=[SignalRelay(run_callback), run_callback])
...                                                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnncli import devices, text
from cnncli.errors import TrainingError
from cnncli.runtime import import_keras, import_tf
from cnncli.text import first_line

keras = import_keras()
tf = import_tf()


def is_chief(placement: devices.Placement) -> bool:
    """Whether this process writes the run: always, except on a multi-worker task
    other than the chief.

    >>> is_chief(devices.decide("cpu", "auto", [], cpu_threads=1))
    True
    """
    return placement.is_chief


def worker_run_dir(placement: devices.Placement) -> Path:
    """A new temporary folder for the outputs of a worker that is not the chief.

    The chief writes the run; the other workers write the same files here, where
    nobody reads them (Keras' recommended pattern). A finished run's copy is removed
    (`cnncli.run.train`); a stopped one's stays, its backup saying where the worker
    stopped.
    """
    task = placement.task.replace(" ", "") or "worker"
    return Path(tempfile.mkdtemp(prefix=f"cnncli-{task}-"))


#: What a worker's hints call the run to resume (its own folder is not one: `worker_run_dir`).
CHIEFS_RUN = "RUN (the chief's run folder: every worker resumes from it)"


def resume_name(placement: devices.Placement, run: Path) -> str:
    """The run to name in ``cnncli train --resume ...``: `run` on the chief (or one
    machine; quoted for a shell as `text.arg` does), `CHIEFS_RUN` on another worker,
    whose `run` is its temporary folder."""
    return text.arg(run) if placement.is_chief else CHIEFS_RUN


class Parts:
    """Training batches made by each worker for its own replicas only.

    `make(first, count, replicas)` returns the dataset of the part of every global
    batch that replicas ``first .. first + count - 1`` of `replicas` train on (replica k
    gets images ``B*k//R`` to ``B*(k+1)//R`` of a global batch of B).
    """

    def __init__(self, make, global_batch: int):
        self.make, self.global_batch = make, global_batch


def replica_batches(strategy, batches):
    """A distributed dataset in which replica k of n gets slice k of each batch.

    `batches` is a dataset of global batches, or `Parts` (each worker makes only its
    replicas' part). Slices are as even as possible, so a last, smaller batch leaves
    some replicas fewer (or no) images.
    """
    replicas = strategy.num_replicas_in_sync

    def for_worker(context: tf.distribute.InputContext):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        if isinstance(batches, Parts):
            return batches.make(first, local, replicas).flat_map(
                _local_slices(batches.global_batch, first, local, replicas))

        def slices(*batch):
            size = tf.cast(tf.shape(batch[0])[0], tf.int64)

            def piece(k):
                start, stop = size * k // replicas, size * (k + 1) // replicas
                return tuple(t[start:stop] for t in batch)

            return tf.data.Dataset.range(first, first + local).map(piece)

        return batches.flat_map(slices)

    return strategy.distribute_datasets_from_function(for_worker)


def _local_slices(global_batch: int, first: int, local: int, replicas: int):
    """Slices of a worker's part of a global batch, one per local replica, cut where the
    global batch would be."""
    base = global_batch * first // replicas

    def slices(*part):
        def piece(k):
            start = global_batch * k // replicas - base
            stop = global_batch * (k + 1) // replicas - base
            return tuple(t[start:stop] for t in part)

        return tf.data.Dataset.range(first, first + local).map(piece)

    return slices


def build_metrics(model, images, labels) -> None:
    """Create the compiled metrics' variables, then reset them.

    Keras makes them at their first update; a backup can only be restored into
    them once they exist. `model.test_on_batch` does this too, but fails under
    MultiWorkerMirroredStrategy; this works under every strategy.

    Raises:
        ValueError: Keras does not know a metric name (as `model.test_on_batch`).
    """
    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync == 1:
        # eagerly: a `tf.function` made for each training counts against one count of
        # tracings, and the sixth training in one process (a notebook) warned of
        # "retracing"
        strategy.run(model.test_step, args=((images, labels),))
    else:
        # autograph=False: a bad metric name stays Keras' plain ValueError.
        step = tf.function(lambda: strategy.run(model.test_step, args=((images, labels),)),
                           autograph=False)
        step()
    model.reset_metrics()


def _plain(logs: dict) -> dict:
    """Metric results (tensors) -> Python floats (arrays for non-scalar results)."""
    out = {}
    for key, value in logs.items():
        value = np.asarray(value)
        out[key] = value.item() if value.ndim == 0 else value
    return out


class _Steps:
    """The compiled training and validation functions of one model."""

    def __init__(self, model, strategy):
        train_step = tf.autograph.experimental.do_not_convert(model.train_step)
        test_step = tf.autograph.experimental.do_not_convert(model.test_step)

        def test_if_any(*batch):
            # A replica whose slice of a last, small batch is empty skips the step,
            # so no loss or metric ever has to average over no images.
            def test():
                test_step(batch)
                return tf.constant(True)

            return tf.cond(tf.shape(batch[0])[0] > 0, test, lambda: tf.constant(False))

        @tf.function
        def train(iterator, steps):
            for _ in tf.range(steps):
                strategy.run(train_step, args=(next(iterator),))
            return model.get_metrics_result()

        @tf.function
        def evaluate(dataset):
            for batch in dataset:
                strategy.run(test_if_any, args=batch)
            return model.get_metrics_result()

        self.train, self.evaluate = train, evaluate


def fit(model, strategy, batches, *, epochs: int, steps_per_epoch: int,
        initial_epoch: int = 0, validation_data=None, callbacks: Sequence = ()) -> dict:
    """Train `model` (compiled under `strategy`) like `model.fit`, on any strategy.

    Args:
        model: a compiled Keras model, built and compiled under ``strategy.scope()``.
        strategy: the `tf.distribute` strategy (`devices.strategy`).
        batches: a dataset of (images, labels) batches of the *global* batch size,
            or `Parts` making each worker's part of them
            (per-replica size x ``strategy.num_replicas_in_sync``), at least
            ``(epochs - initial_epoch) * steps_per_epoch`` of them, the same on
            every worker; replica k trains on slice k of each.
        epochs, initial_epoch, steps_per_epoch: as in `model.fit`.
        validation_data: a finite dataset of batches, each split over all
            replicas like `batches` (any batch size); evaluated after every
            epoch that ran all its steps.
        callbacks: Keras callbacks, called as `model.fit` calls them:
            ``on_train_begin``, ``on_epoch_begin(epoch)`` (after the metrics
            are reset), ``on_train_batch_begin/end(batch, logs)`` once per
            ``steps_per_execution`` steps with the running means of the epoch
            (``loss``, metrics), ``on_epoch_end(epoch, logs)`` with ``val_``
            values, ``on_train_end``. ``model.stop_training`` is honoured after
            each batch. Test-batch callbacks are not called.

    Returns:
        the logs of the last epoch.

    Raises:
        TrainingError: another worker stopped or could not be reached.
    """
    with peers_watched():
        return _fit(model, strategy, batches, epochs, steps_per_epoch, initial_epoch,
                    validation_data, callbacks)


@contextlib.contextmanager
def peers_watched(started: bool = True):
    """TensorFlow's error for a collective whose other side has gone as the
    `TrainingError` saying another worker stopped (see its log); `started`: a run that
    may have a backup to go on from (the first may come before it), else one to start
    again."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as exc:
        again = ("`cnncli train CONFIG --resume auto` (the run goes on from its last "
                 "backup, or starts anew if it stopped before the first)") if started \
            else "the same command"
        raise TrainingError(
            "training stopped because another worker of the cluster stopped or cannot be "
            f"reached ({first_line(exc)})",
            hint=f"see the other workers' logs, then start every worker again with {again}"
        ) from None


def _fit(model, strategy, batches, epochs, steps_per_epoch, initial_epoch, validation_data,
         callbacks) -> dict:
    steps = _Steps(model, strategy)
    train_iterator = iter(replica_batches(strategy, batches))
    val = None if validation_data is None else replica_batches(strategy, validation_data)
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    callbacks = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs,
                                             steps=steps_per_epoch, verbose=0)
    model.stop_training = False
    callbacks.on_train_begin()
    logs: dict = {}
    epoch_logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        done = 0
        while done < steps_per_epoch and not model.stop_training:
            count = min(per_call, steps_per_epoch - done)
            callbacks.on_train_batch_begin(done)
            logs = _plain(steps.train(train_iterator, tf.constant(count)))
            done += count
            callbacks.on_train_batch_end(done - 1, logs)
        epoch_logs = dict(logs)
        if val is not None and done == steps_per_epoch:
            model.reset_metrics()
            with warnings.catch_warnings():  # TensorFlow's note as it traces the loop over
                warnings.filterwarnings(  # a distributed dataset (its options read)
                    "ignore", "To make it possible to preserve tf.data options")
                val_logs = _plain(steps.evaluate(val))
            epoch_logs.update({f"val_{key}": value for key, value in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if epochs > initial_epoch:
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callbacks.on_train_end(epoch_logs)
    return epoch_logs


def _count_over_replicas(strategy):
    """A function: numbers -> their sums over all replicas (a collective operation:
    every worker must call it, in the same order as its other collectives)."""

    @tf.function
    def count(value):
        per_replica = strategy.run(lambda: tf.identity(value))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return count


def all_here(placement: devices.Placement) -> None:
    """Return once every worker of the cluster has come here (at once on one machine).
    A collective: one that stopped makes it fail after TensorFlow's heartbeats miss it
    (seconds), as `peers_watched` says; a wait in the cluster's key-value store for what
    it never wrote would last its whole time-out."""
    if placement.kind == "multiworker":
        _count_over_replicas(devices.strategy(placement))(tf.constant(1.0))


def _sum_over_workers(strategy):
    """A function: this worker's numbers -> their sums over the workers (each counted
    once however many replicas it trains; a collective, as `_count_over_replicas`)."""
    count = _count_over_replicas(strategy)
    replicas_here = len(strategy.extended.worker_devices)
    return lambda values: count(tf.constant(values, tf.float64)).numpy() / replicas_here


class SignalRelay(keras.callbacks.Callback):
    """Stop every worker at the same step when any of them receives Ctrl-C or SIGTERM,
    or when the images none could decode are too many (or one, with ``data.strict``).

    A signal reaches one pod at a time; a worker that stopped alone would leave
    the others waiting in the next step's collective. Send the signals to this
    callback (it has the ``signal`` attribute `cnncli.run.loop.signals_to` sets) and put
    it before `target` in the callbacks: after each batch and epoch, all workers
    agree whether any got one, and each sets ``target.signal`` at that same step
    (SIGTERM on workers that did not get one themselves). In the same collective they
    add up the images each could not decode and those it tried (`unreadable`: a
    function giving this worker's two counts), set as ``target.cluster_unreadable``:
    each decodes only its own part of the data, and all judge the sums.

    >>> class Target:
    ...     signal = None
    >>> relay = SignalRelay(Target())   # then: fit(..., callbacks=[relay, target])
    """

    def __init__(self, target, unreadable=lambda: (0, 0)):
        super().__init__()
        self.target, self.unreadable = target, unreadable
        self.signal = None  # set by the signal handler
        self._sum = None

    def set_model(self, model):
        super().set_model(model)
        self._sum = _sum_over_workers(model.distribute_strategy)

    def _share(self) -> None:
        received = self.signal  # read once: a signal may arrive while workers agree
        signals, failed, tried = self._sum([1.0 if received else 0.0, *self.unreadable()])
        if signals > 0 and not self.target.signal:
            self.target.signal = received or signal.SIGTERM
        self.target.cluster_unreadable = (round(failed), round(tried))

    def on_train_batch_end(self, batch, logs=None):
        self._share()

    def on_epoch_end(self, epoch, logs=None):
        self._share()
