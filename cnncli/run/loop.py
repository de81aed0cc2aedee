"""The fit loop of a run: Keras' `fit` over stretches of equal-length epochs, on one data
iterator per stretch, with Ctrl-C and SIGTERM routed to the run's callback.

On several machines `distributed.fit` replaces `model.fit`, which Keras 3 cannot run
under MultiWorkerMirroredStrategy (keras-team/keras#20585).
"""

from __future__ import annotations

import signal
import threading

from cnncli import devices
from cnncli.devices import distributed
from cnncli.run import finetune
from cnncli.run.state import TrainState


def fit(p, model, state: TrainState, callback, relay=None) -> None:
    """Train the plan `p` from `state` to its end (or until the callback stops it)."""
    val = p.feed.validation(batch_size=p.global_batch, seed=p.cfg.train.seed,
                            preprocessing=p.preprocessing, one_hot=p.one_hot)
    for first_epoch, last_epoch, first_step, steps in finetune.split(stretches(p, state),
                                                                     finetune.boundary(p)):
        if callback.stop:
            break
        finetune.enter(p, model, state, first_epoch, callback.reporter)  # at its epoch
        common = dict(batch_size=p.global_batch, seed=p.cfg.train.seed, epochs=last_epoch,
                      start_epoch=first_epoch, start_step=first_step,
                      preprocessing=p.preprocessing, augment=p.cfg.data.augment,
                      one_hot=p.one_hot)
        callback.first_step = first_step
        if relay is not None:  # several machines: each makes its replicas' part only
            parts = distributed.Parts(
                lambda first, count, replicas, common=common: p.feed.training(
                    **common, part=(first, count, replicas)), p.global_batch)
            distributed.fit(model, devices.strategy(p.placement), parts,
                            epochs=last_epoch, initial_epoch=first_epoch,
                            steps_per_epoch=steps, validation_data=val,
                            callbacks=[relay, callback])
        else:
            model.fit(p.feed.training(**common), epochs=last_epoch, initial_epoch=first_epoch,
                      steps_per_epoch=steps, validation_data=val, callbacks=[callback],
                      shuffle=False, verbose=0)  # the order comes from pipeline.epoch_order
    callback.raise_if_stopped()


def stretches(p, state: TrainState) -> list[tuple[int, int, int, int]]:
    """(first_epoch, end_epoch, first_step, steps_per_epoch) for each `fit` call: a
    partial first epoch (when resuming mid-epoch), the full epochs, a partial last epoch
    (when `train.steps` ends mid-epoch)."""
    spe, epoch, step = p.steps_per_epoch, state.epoch, state.step
    if state.stopped_early:  # resumed after it: its results are saved, no more training
        return []
    last_steps = p.total_steps - (p.epochs - 1) * spe
    out = []
    if step:
        steps = (last_steps if epoch == p.epochs - 1 else spe) - step
        out.append((epoch, epoch + 1, step, steps))
        epoch += 1
    full_end = p.epochs - 1 if last_steps < spe else p.epochs
    if epoch < full_end:
        out.append((epoch, full_end, 0, spe))
        epoch = full_end
    if epoch < p.epochs:
        out.append((epoch, p.epochs, 0, last_steps))
    return [s for s in out if s[3] > 0]  # Keras takes 0 steps for "the whole data"


class signals_to:
    """Route SIGINT and SIGTERM to `callback.signal` (training stops after the current
    step, with a backup); a second Ctrl-C stops at once. Only Python's main thread may
    handle signals: a training in another thread (a web app's worker, a notebook's
    background thread) leaves them as they are."""

    def __init__(self, callback):
        self.callback = callback

    def __enter__(self):
        self.saved = {} if threading.current_thread() is not threading.main_thread() else {
            s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        if self.callback.signal:
            raise KeyboardInterrupt
        self.callback.signal = signum

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)
