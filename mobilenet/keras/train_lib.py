"""Custom training loop for mobilenet.keras.MobileNetV2 (no `fit()`).

* `tf.function` train step with a GradientTape, run under a tf.distribute
  strategy: "default" (one device), "mirrored" (all local GPUs, or all
  logical CPUs when there is no GPU) or "multiworker"
  (MultiWorkerMirroredStrategy, multiworker.py: the same command on every
  machine with its own TF_CONFIG; per-replica losses are already scaled by
  the global batch size).
* A checkpoint (tf.train.Checkpoint + run.json) at every epoch end and on
  SIGINT/SIGTERM; rerunning the same command resumes at the exact step
  (the shuffle order of an epoch is a function of seed and epoch number).
* The end of a run (finish.py): BatchNorm moving statistics re-estimated
  over training batches, the final evaluation, export and curve; the last
  line is `final val_accuracy X`, the exported model's validation accuracy.
* Fine-tuning (finetune.py): --init_weights, --freeze, a head phase of
  --head_epochs with the backbone frozen, then the rest at
  --fine_tune_learning_rate (recipe.PhaseSchedule); when only the head
  learns on unaugmented images it trains on features computed once
  (feature_cache.py).
* TensorBoard event files (tensorboard_log.py), chief only.
"""

import dataclasses
import os
import signal
import sys
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from mobilenet.keras import data as data_lib
from mobilenet.keras import epoch_loop
from mobilenet.keras import feature_cache
from mobilenet.keras import finetune
from mobilenet.keras import finish
from mobilenet.keras import init_source
from mobilenet.keras import model as model_lib
from mobilenet.keras import multiworker
from mobilenet.keras import pipeline
from mobilenet.keras import qat_layers
from mobilenet.keras import recipe
from mobilenet.keras import run_dir
from mobilenet.keras import steps as steps_lib
from mobilenet.keras import tensorboard_log
from mobilenet.keras import validation
from mobilenet.keras import train_config
from mobilenet.keras.train_config import (  # pylint: disable=unused-import
    Config, OPTIMIZERS, STRATEGIES, TrainError, check_classes, scan, validate)

RUN_FILE = run_dir.RUN_FILE
Result = run_dir.Result


class _StopFlag:
  """Set by SIGINT/SIGTERM (or a test hook); checked after every step."""

  def __init__(self):
    self.signum = None

  def __call__(self, signum, frame):
    del frame
    self.signum = signum
    multiworker.stopping = True  # a lost peer now means: stop, not restart


class Trainer:
  """One training run; `run()` trains, resumes or just reports."""

  def __init__(self, cfg: Config, log: Callable[[str], None] = print,
               stop_after_epoch: Optional[int] = None):
    validate(cfg)
    cfg, self.init_source, notes = init_source.resolve(cfg)
    self.cfg = cfg
    self.worker = multiworker.this_worker(cfg.strategy)
    if not self.worker.chief:  # the chief speaks for the cluster
      log = lambda _: None  # pylint: disable=unnecessary-lambda-assignment
    self.log = log
    for note in notes:
      log(f"note: {note}")
    # Test hook: behave as if SIGTERM arrived once this epoch is done.
    self.stop_after_epoch = stop_after_epoch
    self.train_data, self.val_data, self.class_names, self.skipped = (
        data_lib.load(cfg))
    self.strategy = recipe.make_strategy(cfg.strategy)
    if cfg.strategy == "mirrored":  # --num_cpu_devices shows here
      log(f"mirrored over {self.strategy.num_replicas_in_sync} device(s)")
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(cfg.seed)
    with self.strategy.scope():
      self.model = model_lib.MobileNetV2(
          input_shape=(cfg.input_size, cfg.input_size, cfg.channels),
          alpha=cfg.alpha, weights=None, classes=len(self.class_names),
          classifier_activation=None, bn_momentum=cfg.bn_momentum,
          qat=cfg.granularity if cfg.qat else None)
      if self.init_source is not None:
        self.log(finetune.load_init_weights(
            self.model, self.init_source, cfg, len(self.class_names)))
      finetune.frozen_layers(self.model, cfg.freeze)  # bad names fail here
      self.optimizer = recipe.make_optimizer(
          cfg, self.train_data.steps(cfg.batch_size))
      # Built over every weight before any is frozen: the phases then train
      # subsets of one fixed slot set, which the checkpoint restores.
      self.optimizer.build(self.model.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.finalized = tf.Variable(False, trainable=False)
      self.bn_count = tf.Variable(0.0, trainable=False)
    if cfg.qat_freeze_bn_after_steps:
      qat_layers.freeze_bn_after(self.model, self.step,
                                 cfg.qat_freeze_bn_after_steps)
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step,
        epoch=self.epoch, step_in_epoch=self.step_in_epoch,
        finalized=self.finalized)
    self.state = run_dir.RunState(config=self.run_config())
    self._skips_reported = 0
    self._phase = None
    self.feature_cache = None
    self.tensorboard = None
    self._set_phase(0)

  # ---- config / checkpoint --------------------------------------------------

  def run_config(self):
    return train_config.run_config(self.cfg, self.class_names,
                                   recipe.fine_tune_learning_rate(self.cfg))

  @property
  def history(self):
    return self.state.history

  def restore(self):
    """Resumes from the checkpoint directory when it holds a run (the
    chief's; the other workers get its variables)."""
    state = None
    if self.worker.chief:
      state = run_dir.restore(self.cfg.checkpoint_dir, self.checkpoint,
                              self.run_config())
    else:  # a killed predecessor's leftovers
      multiworker.discard(self.cfg.checkpoint_dir, self.worker)
    if self.worker.count > 1:
      multiworker.broadcast_from_chief(
          self.strategy, self.model.variables + self.optimizer.variables +
          [self.step, self.epoch, self.step_in_epoch, self.finalized],
          self.worker)
    if state is None:
      return False
    self.state = state
    return True

  def save(self):
    # Every worker saves (collectively); only the chief's save is kept.
    if self.tensorboard:  # the events the checkpoint covers are on disk
      self.tensorboard.flush()
    try:
      state = run_dir.save(
          multiworker.save_dir(self.cfg.checkpoint_dir, self.worker),
          self.checkpoint, dataclasses.replace(
              self.state, config=self.run_config(),
              step=int(self.step.numpy()), epoch=int(self.epoch.numpy()),
              step_in_epoch=int(self.step_in_epoch.numpy())))
    finally:
      multiworker.discard(self.cfg.checkpoint_dir, self.worker)
    if self.worker.chief:
      self.state = state

  # ---- steps ----------------------------------------------------------------

  def _build_steps(self):
    # One trace per step function, over the validation stream's spec.
    spec = self.spec = self._distribute(self.val_data.dataset(
        self.cfg.batch_size)).element_spec
    self.reestimate_step = None
    self.steps = steps_lib.build(self.model, self.optimizer, self.strategy,
                                 self.cfg.batch_size, spec, self,
                                 self.cfg.label_smoothing)
    self._train_step = self.steps.train

  def _set_phase(self, epoch):
    """Traces the steps again when the phase's trainable flags change."""
    if finetune.set_phase(self, epoch):
      self._build_steps()

  def _distribute(self, ds):
    return self.strategy.experimental_distribute_dataset(ds)

  def batches(self, dataset, source):
    """The distributed batches of `dataset` (read from the pipeline
    `source`); damaged input is a one-line TrainError."""
    try:
      yield from pipeline.checked(self._distribute(dataset), source)
    except data_lib.DataError as e:
      raise TrainError(str(e)) from None

  def epoch_stream(self, epoch, skip_batches=0):
    """(batches, train step) of epoch `epoch`: images through the model, or
    while only the head learns on unaugmented images, the cached features
    through the head (feature_cache.py)."""
    b, seed = self.cfg.batch_size, self.cfg.seed * 1_000_003 + epoch
    cache = feature_cache.for_epoch(self)
    if cache is not None:
      return cache.dataset(b, seed, skip_batches), cache.train_step
    return self.train_data.dataset(
        b, shuffle_seed=seed, skip_batches=skip_batches), self._train_step

  def train_batches(self, dataset, step=None):
    """One compiled train step (`step`, default the model's) per batch of
    `dataset`, as an epoch runs them but without its bookkeeping (no
    logging, checkpoint or epoch count); returns the summed [loss, correct,
    count].  The benchmark times training through this."""
    totals = np.zeros(3)
    for batch in self.batches(dataset, self.train_data):
      totals += (step or self._train_step)(batch).numpy()
    return totals

  def evaluate(self, pipeline=None, reestimate=False):
    return validation.evaluate(self, pipeline or self.val_data, reestimate)

  def reestimate_bn(self):
    return validation.reestimate_bn(self)

  # ---- the loop -------------------------------------------------------------

  def _progbar(self, steps):
    import keras  # pylint: disable=g-import-not-at-top
    if self.cfg.verbose != 1 or not self.worker.chief:
      return None
    dynamic = sys.stdout.isatty()
    return keras.utils.Progbar(steps, verbose=1 if dynamic else 2,
                               stateful_metrics=["loss", "accuracy"])

  def run(self):
    cfg = self.cfg
    resumed = self.restore()
    if resumed:
      epoch = int(self.epoch.numpy())
      where = (f"epoch {epoch + 1}, {int(self.step_in_epoch.numpy())} steps "
               "into it" if epoch < cfg.epochs else "all epochs done")
      self.log(f"resuming from {cfg.checkpoint_dir} at step "
               f"{int(self.step.numpy())}: {where}")
    if bool(self.finalized.numpy()) and int(self.epoch.numpy()) >= cfg.epochs:
      self.log(f"training already finished in {cfg.checkpoint_dir} "
               f"({int(self.step.numpy())} steps); nothing to do.")
      return self._result(True)

    stop = _StopFlag()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    self.tensorboard = tensorboard_log.open_log(self)
    try:
      interrupted = epoch_loop.train_epochs(self, stop)
      return self._result(False) if interrupted else self._finish()
    finally:
      for s, h in old.items():
        signal.signal(s, h)
      if self.tensorboard:
        self.tensorboard.close()
      if self.feature_cache:
        self.feature_cache.close()
        self.feature_cache = None

  def _reestimates(self):
    """BN re-estimation is on and some BatchNorm learns (not frozen, and
    not past the QAT BN freeze, after which the statistics stay)."""
    n = self.cfg.qat_freeze_bn_after_steps
    if n and int(self.step.numpy()) >= n:
      return False
    return self.cfg.bn_reestimate and any(
        l.trainable for l in model_lib.batch_norm_layers(self.model))

  def _finish(self):
    return finish.finish(self)

  def _result(self, finished):
    return Result(
        finished=finished, step=int(self.step.numpy()),
        epoch=int(self.epoch.numpy()), history=list(self.history),
        accuracy_before_bn_reestimate=self.state.accuracy_before_bn_reestimate,
        accuracy=self.state.accuracy,
        skipped_images=len(self.skipped))


def train(cfg: Config, log=print, stop_after_epoch=None) -> Result:
  return Trainer(cfg, log, stop_after_epoch).run()

