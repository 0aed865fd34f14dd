"""Custom training loop for mobilenet.keras.MobileNetV2 (no `fit()`).

* `tf.function` train step with a GradientTape, run under a tf.distribute
  strategy: "default" (one device), "mirrored" (all local GPUs, or all
  logical CPUs when there is no GPU) or "multiworker"
  (MultiWorkerMirroredStrategy: start the same command on every machine with
  TF_CONFIG set; nothing else changes, per-replica losses are already scaled
  by the global batch size).
* A checkpoint (tf.train.Checkpoint + run.json) at every epoch end and on
  SIGINT/SIGTERM; rerunning the same command resumes at the exact step
  (the shuffle order of an epoch is a function of seed and epoch number).
* BatchNorm moving statistics are re-estimated over training batches before
  the final evaluation and export (Keras' momentum 0.999 leaves them far from
  the data after a short run); both accuracies are reported.
"""

import dataclasses
import json
import math
import os
import signal
import sys
import time
from typing import Callable, List, Optional

import numpy as np
import tensorflow as tf

from mobilenet.core import arch
from mobilenet.core import checkpoint as checkpoint_lib
from mobilenet.core import params as params_lib
from mobilenet.keras import data as data_lib
from mobilenet.keras import layers as layers_lib
from mobilenet.keras import model as model_lib
from mobilenet.keras.train_config import (  # pylint: disable=unused-import
    Config, OPTIMIZERS, STRATEGIES, TrainError, check_classes, scan, validate)

RUN_FILE = "run.json"
# Fields that must match to resume from a checkpoint directory.
_RESUME_KEYS = ("alpha", "input_size", "channels", "class_names", "batch_size",
                "seed", "optimizer")
@dataclasses.dataclass
class Result:
  finished: bool
  step: int
  epoch: int
  history: List[dict]
  accuracy_before_bn_reestimate: Optional[float] = None
  accuracy: Optional[float] = None
  export_path: Optional[str] = None
  curve_path: Optional[str] = None
  skipped_images: int = 0


def make_strategy(name):
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
  return tf.distribute.MirroredStrategy(devices=devices)


def _optimizer(cfg, total_steps):
  import keras  # pylint: disable=g-import-not-at-top
  lr = cfg.learning_rate
  if cfg.lr_schedule == "cosine":
    # A function of the optimizer's step count, which the checkpoint keeps,
    # so a resumed run continues on the same curve.
    lr = keras.optimizers.schedules.CosineDecay(lr, total_steps)
  if cfg.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(lr)
  if cfg.optimizer == "adam":
    return keras.optimizers.Adam(lr)
  return keras.optimizers.SGD(lr, momentum=0.9)


def load_data(cfg):
  """(train pipeline, validation pipeline, class names, skip counter)."""
  skipped = data_lib.SkipCounter()
  if cfg.dataset == "mnist":
    try:
      train, val, names = data_lib.keras_mnist(cfg.input_size, cfg.channels)
    except data_lib.DataError as e:
      raise TrainError(str(e)) from None
    check_classes(cfg, names)
    return train, val, names, skipped
  split, val_split, names = scan(cfg)
  train = data_lib.FolderPipeline(split, cfg.input_size, cfg.channels,
                                  skipped)
  val = data_lib.FolderPipeline(val_split, cfg.input_size, cfg.channels,
                                skipped)
  return train, val, names, skipped


class _StopFlag:
  """Set by SIGINT/SIGTERM (or a test hook); checked after every step."""

  def __init__(self):
    self.signum = None

  def __call__(self, signum, frame):
    del frame
    self.signum = signum


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf8") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")
  os.replace(tmp, path)


def save_curve(history, path, final_accuracy=None):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  epochs = [h["epoch"] for h in history]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
  ax1.plot(epochs, [h["loss"] for h in history], "o-", label="train")
  ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
  ax1.set_xlabel("epoch")
  ax1.set_ylabel("loss")
  ax1.legend()
  ax2.plot(epochs, [h["accuracy"] for h in history], "o-", label="train")
  ax2.plot(epochs, [h["val_accuracy"] for h in history], "o-",
           label="validation")
  if final_accuracy is not None:
    ax2.plot([epochs[-1]], [final_accuracy], "*", markersize=12,
             label="validation, BN re-estimated")
  ax2.set_xlabel("epoch")
  ax2.set_ylabel("accuracy")
  ax2.legend()
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=80)
  plt.close(fig)
  os.replace(tmp, path)


class Trainer:
  """One training run; `run()` trains, resumes or just reports."""

  def __init__(self, cfg: Config, log: Callable[[str], None] = print,
               stop_after_epoch: Optional[int] = None):
    validate(cfg)
    self.cfg = cfg
    self.log = log
    # Test hook: behave as if SIGTERM arrived once this epoch is done.
    self.stop_after_epoch = stop_after_epoch
    self.train_data, self.val_data, self.class_names, self.skipped = (
        load_data(cfg))
    self.strategy = make_strategy(cfg.strategy)
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(cfg.seed)
    with self.strategy.scope():
      self.model = model_lib.MobileNetV2(
          input_shape=(cfg.input_size, cfg.input_size, cfg.channels),
          alpha=cfg.alpha, weights=None, classes=len(self.class_names),
          classifier_activation=None, bn_momentum=cfg.bn_momentum)
      self.optimizer = _optimizer(
          cfg, cfg.epochs * self.train_data.steps(cfg.batch_size))
      self.optimizer.build(self.model.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.finalized = tf.Variable(False, trainable=False)
      self.bn_count = tf.Variable(0.0, trainable=False)
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step,
        epoch=self.epoch, step_in_epoch=self.step_in_epoch,
        finalized=self.finalized)
    self.history = []
    self.state = {}
    self._skips_reported = 0
    self._build_steps()

  # ---- config / checkpoint --------------------------------------------------

  def run_config(self):
    c = self.cfg
    return {"alpha": float(c.alpha), "input_size": c.input_size,
            "channels": c.channels, "class_names": self.class_names,
            "batch_size": c.batch_size, "seed": c.seed,
            "optimizer": c.optimizer, "learning_rate": c.learning_rate,
            "lr_schedule": c.lr_schedule,
            "bn_momentum": c.bn_momentum, "epochs": c.epochs}

  def _run_file(self):
    return os.path.join(self.cfg.checkpoint_dir, RUN_FILE)

  def restore(self):
    """Resumes from the checkpoint directory when it holds a run."""
    d = self.cfg.checkpoint_dir
    if os.path.exists(d) and not os.path.isdir(d):
      raise TrainError(f"--checkpoint_dir={d} is a file; pass a directory.")
    os.makedirs(d, exist_ok=True)
    path = self._run_file()
    if not os.path.exists(path):
      if tf.train.latest_checkpoint(d):
        raise TrainError(f"--checkpoint_dir={d} holds a checkpoint without "
                         f"{RUN_FILE}; use an empty directory.")
      return False
    try:
      with open(path, encoding="utf8") as f:
        state = json.load(f)
      saved = state["config"]
      ckpt = os.path.join(d, state["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise TrainError(f"checkpoint {path} is corrupt ({type(e).__name__}: "
                       f"{e}); delete {d} to start over.") from None
    mine = self.run_config()
    for k in _RESUME_KEYS:
      if saved.get(k) != mine[k]:
        raise TrainError(
            f"checkpoint in {d} was made with {k}={saved.get(k)!r}, this run "
            f"has {k}={mine[k]!r}; rerun with the original flags or use "
            "another --checkpoint_dir.")
    try:
      self.checkpoint.read(ckpt).assert_existing_objects_matched()
    except Exception as e:  # pylint: disable=broad-except
      # A damaged file surfaces as OpError, ValueError, IndexError, ...
      msg = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise TrainError(f"cannot restore checkpoint {ckpt}: {msg[:200]}; "
                       f"delete {d} to start over.") from None
    self.history = list(state.get("history", []))
    self.state = state
    return True

  def save(self):
    d = self.cfg.checkpoint_dir
    prefix = os.path.join(d, f"ckpt-{int(self.step.numpy())}")
    path = self.checkpoint.write(prefix)
    state = dict(self.state)
    state.update(config=self.run_config(),
                 checkpoint=os.path.basename(path),
                 step=int(self.step.numpy()), epoch=int(self.epoch.numpy()),
                 step_in_epoch=int(self.step_in_epoch.numpy()),
                 history=self.history)
    _write_json(self._run_file(), state)
    old = self.state.get("checkpoint")
    self.state = state
    if old and old != state["checkpoint"]:  # keep only the newest
      for name in os.listdir(d):
        if name.startswith(old + "."):
          os.remove(os.path.join(d, name))

  # ---- steps ----------------------------------------------------------------

  def _build_steps(self):
    model, optimizer, strategy = self.model, self.optimizer, self.strategy
    global_batch = self.cfg.batch_size

    def loss_and_counts(labels, logits):
      per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=labels, logits=logits)
      correct = tf.reduce_sum(tf.cast(
          tf.equal(tf.argmax(logits, -1), labels), tf.float32))
      n = tf.cast(tf.shape(labels)[0], tf.float32)
      return per_example, tf.stack([tf.reduce_sum(per_example), correct, n])

    def train_replica(images, labels):
      with tf.GradientTape() as tape:
        logits = model(images, training=True)
        per_example, sums = loss_and_counts(labels, logits)
        loss = tf.nn.compute_average_loss(per_example,
                                          global_batch_size=global_batch)
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return sums

    def eval_replica(images, labels):
      _, sums = loss_and_counts(labels, model(images, training=False))
      return sums

    def bn_replica(images):
      model(images, training=True)
      return tf.constant(0.0)

    def reduce(per_replica):
      return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, None)

    # One trace per step function: the batch dimension stays unknown, so the
    # last, smaller batch of an epoch does not trigger a second trace.
    spec = self._distribute(self.val_data.dataset(global_batch)).element_spec

    @tf.function(input_signature=[spec])
    def train_step(batch):
      sums = reduce(strategy.run(train_replica, args=batch))
      self.step.assign_add(1)
      self.step_in_epoch.assign_add(1)
      return sums

    @tf.function(input_signature=[spec])
    def eval_step(batch):
      return reduce(strategy.run(eval_replica, args=batch))

    @tf.function(input_signature=[spec])
    def bn_step(batch):
      strategy.run(bn_replica, args=(batch[0],))
      self.bn_count.assign_add(1.0)

    self._train_step, self._eval_step, self._bn_step = (train_step, eval_step,
                                                        bn_step)

  def _distribute(self, ds):
    return self.strategy.experimental_distribute_dataset(ds)

  def evaluate(self, pipeline=None):
    pipeline = pipeline or self.val_data
    total = np.zeros(3)
    for batch in self._distribute(pipeline.dataset(self.cfg.batch_size)):
      total += self._eval_step(batch).numpy()
    if not total[2]:
      raise TrainError("no readable validation images.")
    return float(total[0] / total[2]), float(total[1] / total[2])

  def reestimate_bn(self):
    """Moving statistics := mean of batch statistics over training batches
    (the model's weights are not touched)."""
    bns = model_lib.batch_norm_layers(self.model)
    self.bn_count.assign(0.0)
    layers_lib.start_reestimation(bns, self.bn_count)
    try:
      ds = self.train_data.dataset(self.cfg.batch_size,
                                   shuffle_seed=self.cfg.seed + 10_000)
      ds = ds.take(self.cfg.bn_reestimate_batches)
      # A fresh trace: the layers read the count only when attached.
      self._build_steps()
      for batch in self._distribute(ds):
        self._bn_step(batch)
    finally:
      layers_lib.stop_reestimation(bns)
      self._build_steps()
    return int(self.bn_count.numpy())

  # ---- the loop -------------------------------------------------------------

  def _progbar(self, steps):
    import keras  # pylint: disable=g-import-not-at-top
    if self.cfg.verbose != 1:
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
    try:
      interrupted = self._train_epochs(stop)
    finally:
      for s, h in old.items():
        signal.signal(s, h)
    if interrupted:
      return self._result(False)
    return self._finish()

  def _train_epochs(self, stop):
    cfg = self.cfg
    steps = self.train_data.steps(cfg.batch_size)
    while int(self.epoch.numpy()) < cfg.epochs:
      epoch = int(self.epoch.numpy())
      skip = int(self.step_in_epoch.numpy())
      if self.finalized.numpy():  # more --epochs after a finished run
        self.finalized.assign(False)
      ds = self.train_data.dataset(cfg.batch_size,
                                   shuffle_seed=cfg.seed * 1_000_003 + epoch,
                                   skip_batches=skip)
      self.log(f"epoch {epoch + 1}/{cfg.epochs}")
      bar = self._progbar(steps)
      totals = np.array(self.state.get("partial", [0.0, 0.0, 0.0]))
      start = time.time()
      for batch in self._distribute(ds):
        totals += self._train_step(batch).numpy()
        if bar:
          bar.update(int(self.step_in_epoch.numpy()),
                     [("loss", totals[0] / max(totals[2], 1)),
                      ("accuracy", totals[1] / max(totals[2], 1))])
        if stop.signum is not None:
          self.state["partial"] = totals.tolist()
          self.save()
          self.log(f"interrupted by signal {stop.signum} at step "
                   f"{int(self.step.numpy())}; checkpoint saved in "
                   f"{cfg.checkpoint_dir}, rerun the same command to resume.")
          return True
      if not totals[2]:
        raise TrainError("no readable training images in the stream; "
                         + self.skipped.summary())
      if len(self.skipped) > self._skips_reported:
        self._skips_reported = len(self.skipped)
        self.log("warning: " + self.skipped.summary())
      val_loss, val_acc = self.evaluate()
      entry = {"epoch": epoch + 1, "step": int(self.step.numpy()),
               "loss": float(totals[0] / totals[2]),
               "accuracy": float(totals[1] / totals[2]),
               "val_loss": float(val_loss), "val_accuracy": float(val_acc),
               "seconds": round(time.time() - start, 1)}
      self.history.append(entry)
      self.log(f"epoch {epoch + 1}: loss {entry['loss']:.4f} accuracy "
               f"{entry['accuracy']:.4f} val_loss {val_loss:.4f} "
               f"val_accuracy {val_acc:.4f} ({entry['seconds']:.0f} s)")
      self.epoch.assign_add(1)
      self.step_in_epoch.assign(0)
      self.state.pop("partial", None)
      self.save()
      if (self.stop_after_epoch is not None and
          epoch + 1 >= self.stop_after_epoch):
        stop.signum = signal.SIGTERM
      if stop.signum is not None:
        self.log(f"interrupted by signal {stop.signum} after epoch "
                 f"{epoch + 1}; checkpoint saved in {cfg.checkpoint_dir}, "
                 "rerun the same command to resume.")
        return True
    return False

  def _finish(self):
    cfg = self.cfg
    _, before = self.evaluate()
    after = before
    if cfg.bn_reestimate:
      n = self.reestimate_bn()
      _, after = self.evaluate()
      self.log(f"validation accuracy {before:.4f} with the moving BN "
               f"statistics from training, {after:.4f} after re-estimating "
               f"them over {n} training batches")
    else:
      self.log(f"validation accuracy {before:.4f}")
    self.state.update(accuracy_before_bn_reestimate=before, accuracy=after,
                      bn_reestimated=bool(cfg.bn_reestimate))
    self.finalized.assign(True)
    self.save()
    export = self.export()
    curve = os.path.join(cfg.checkpoint_dir, "training_curve.png")
    if self.history:
      save_curve(self.history, curve,
                 after if cfg.bn_reestimate else None)
      self.log(f"training curve: {curve}")
    result = self._result(True)
    result.export_path, result.curve_path = export, curve
    return result

  def export(self):
    cfg = self.cfg
    path = cfg.export_path or os.path.join(cfg.checkpoint_dir, "model.h5")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    net = arch.derive(cfg.alpha, cfg.channels, len(self.class_names))
    params_lib.save_h5(model_lib.get_params(self.model), path, net)
    last = self.history[-1] if self.history else {}
    checkpoint_lib.write_sidecar(
        os.path.splitext(path)[0] + ".json", path, alpha=cfg.alpha,
        input_size=cfg.input_size, channels=cfg.channels,
        labels=self.class_names, normalization="tf",
        val_accuracy=self.state.get("accuracy"),
        val_accuracy_before_bn_reestimate=self.state.get(
            "accuracy_before_bn_reestimate"),
        epochs=int(self.epoch.numpy()), steps=int(self.step.numpy()),
        train_loss=last.get("loss"), train_command=cfg.command)
    self.log(f"exported {path} (+ {os.path.basename(path)[:-3]}.json)")
    return path

  def _result(self, finished):
    return Result(
        finished=finished, step=int(self.step.numpy()),
        epoch=int(self.epoch.numpy()), history=list(self.history),
        accuracy_before_bn_reestimate=self.state.get(
            "accuracy_before_bn_reestimate"),
        accuracy=self.state.get("accuracy"),
        skipped_images=len(self.skipped))


def train(cfg: Config, log=print, stop_after_epoch=None) -> Result:
  return Trainer(cfg, log, stop_after_epoch).run()


def steps_per_epoch(num_images, batch_size):
  return math.ceil(num_images / batch_size)
