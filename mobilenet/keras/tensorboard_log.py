"""TensorBoard event files of a training run (`train --tensorboard`, on by
default; docs/tensorboard.md).

Two runs under <checkpoint_dir>/tensorboard, the layout of Keras' TensorBoard
callback, so TensorBoard draws training and validation in one chart:

  train/       step/loss, step/learning_rate    x = global step, every
                                                --tensorboard_every_steps
               epoch/loss, epoch/accuracy,      x = epoch (1, 2, ...)
               epoch/seconds, epoch/images_per_second,
               epoch/inputs (a few augmented training inputs, images)
  validation/  epoch/loss, epoch/accuracy       x = epoch; the values of
                                                run.json's history
               final/accuracy_moving_bn,        x = the last epoch
               final/accuracy (the export's)

Only the chief of a --strategy=multiworker cluster writes.

Resume.  Events are written as training goes (a live view), and flushed
before every checkpoint, so the files always hold every step the checkpoint
holds.  A run killed without a checkpoint (SIGKILL, a lost peer) leaves
events past it; the steps after the checkpoint are then recomputed.  So
when a run opens the directory it first cuts every event file back to the
checkpoint: events of steps (step/ tags) after the checkpoint's step and of
epochs (epoch/, final/ tags) after its last finished epoch are dropped (the
file is rewritten to a temp file and renamed over the old one).  The curves
then continue without a duplicate or a missing step.  A TensorBoard that
was watching during the restart still holds the dropped points until it is
reloaded (restart it, or it picks them up with its next directory scan of a
new run).
"""

import glob
import os

import tensorflow as tf

from mobilenet.keras import recipe

ROOT = "tensorboard"
RUNS = ("train", "validation")
STEP = "step/"    # tags on the global-step axis
FINAL = "final/"  # the end-of-run numbers, on the epoch axis
INPUT_IMAGES = 3


def enabled(cfg, worker):
  """The chief writes (it speaks for the cluster), and only with
  --tensorboard."""
  return bool(cfg.tensorboard) and worker.chief


def directory(checkpoint_dir):
  return os.path.join(checkpoint_dir, ROOT)


def open_log(trainer):
  """The Log of `trainer`'s run (after restore), or None when this process
  does not write; cuts old event files back to the checkpoint first."""
  cfg = trainer.cfg
  if not enabled(cfg, trainer.worker):
    return None
  root = directory(cfg.checkpoint_dir)
  cut_back(root, step=int(trainer.step.numpy()),
           epoch=int(trainer.epoch.numpy()),
           finalized=bool(trainer.finalized.numpy()))
  return Log(root, cfg.tensorboard_every_steps,
             lambda step: recipe.rate_of_step(trainer.optimizer, step))


def _keep(event, step, epoch, finalized):
  if not event.HasField("summary") or not event.summary.value:
    return True  # file version, ...
  tag = event.summary.value[0].tag
  if tag.startswith(STEP):
    return event.step <= step
  if tag.startswith(FINAL):
    return event.step < epoch or (finalized and event.step == epoch)
  return event.step <= epoch


def cut_back(root, step, epoch, finalized):
  """Drops the events of `root`'s runs that a checkpoint at (`step`,
  finished `epoch`s, `finalized`) does not cover; returns how many were
  dropped.  A truncated last record (a killed writer) is dropped too."""
  from tensorflow.core.util import event_pb2  # pylint: disable=g-import-not-at-top
  dropped = 0
  for run in RUNS:
    for path in sorted(glob.glob(os.path.join(root, run, "*tfevents*"))):
      if path.endswith(".tmp"):  # a cut interrupted before its rename
        os.remove(path)
        continue
      kept, cut = [], 0
      try:
        for record in tf.data.TFRecordDataset(path):
          raw = record.numpy()
          if _keep(event_pb2.Event.FromString(raw), step, epoch, finalized):
            kept.append(raw)
          else:
            cut += 1
      except tf.errors.DataLossError:
        cut += 1
      if cut:
        with tf.io.TFRecordWriter(path + ".tmp") as f:
          for raw in kept:
            f.write(raw)
        os.replace(path + ".tmp", path)
        dropped += cut
  return dropped


def _metadata(plugin, description=None):
  """What tensorboard's own summary ops attach (the TensorBoard package is
  not needed to write, only to view)."""
  from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top
  meta = summary_pb2.SummaryMetadata(summary_description=description or "")
  meta.plugin_data.plugin_name = plugin  # content: version-0 plugin data
  return meta


class Log:
  """The event writers of one process's part of a run."""

  def __init__(self, root, every_steps, rate_of_step):
    self.writers = {run: tf.summary.create_file_writer(os.path.join(root, run))
                    for run in RUNS}
    self.every = int(every_steps)
    self.rate_of_step = rate_of_step

  def _scalars(self, run, step, values, description=None):
    with self.writers[run].as_default(step=step):
      for tag, value in values.items():
        tf.summary.write(tag, tf.constant(float(value), tf.float32),
                         metadata=_metadata("scalars", description))

  def step(self, step, sums):
    """After global step `step`; `sums` = its [loss sum, correct, count]."""
    if step % self.every == 0 and sums[2]:
      self._scalars("train", step, {
          STEP + "loss": sums[0] / sums[2],
          STEP + "learning_rate": self.rate_of_step(step)})

  def inputs(self, epoch, images):
    """A few model inputs ([-1, 1] images, NHWC) of epoch `epoch` (1-based);
    anything else (cached features) is not an image and is skipped."""
    if images.shape.rank != 4:
      return
    pixels = tf.cast(tf.clip_by_value(tf.round(
        (images[:INPUT_IMAGES] + 1.0) * 127.5), 0, 255), tf.uint8)
    _, h, w, _ = pixels.shape
    pngs = [tf.image.encode_png(p) for p in pixels]
    with self.writers["train"].as_default(step=epoch):
      tf.summary.write("epoch/inputs", tf.stack([str(w), str(h)] + pngs),
                       metadata=_metadata(
                           "images", "training inputs as the model sees them "
                           "(augmented), from the epoch's first batch"))

  def epoch(self, entry, validation_note):
    """One run.json history entry."""
    e = entry["epoch"]
    self._scalars("train", e, {
        "epoch/" + k: entry[k]
        for k in ("loss", "accuracy", "seconds", "images_per_second")})
    self._scalars("validation", e, {"epoch/loss": entry["val_loss"],
                                    "epoch/accuracy": entry["val_accuracy"]},
                  description=validation_note)

  def final(self, epoch, before, after, note):
    self._scalars("validation", epoch, {FINAL + "accuracy_moving_bn": before})
    self._scalars("validation", epoch, {FINAL + "accuracy": after},
                  description=note)

  def flush(self):
    for w in self.writers.values():
      w.flush()

  def close(self):
    for w in self.writers.values():
      w.close()


def read(root):
  """{run: {tag: {step: value}}} of the event files under `root`; images
  as their encoded-string count.  Raises on a duplicate (tag, step)."""
  out = {}
  for run in RUNS:
    tags = out.setdefault(run, {})
    for path in sorted(glob.glob(os.path.join(root, run, "*tfevents*"))):
      for event in tf.compat.v1.train.summary_iterator(path):
        for v in event.summary.value:
          values = tags.setdefault(v.tag, {})
          if event.step in values:
            raise ValueError(f"{run}/{v.tag}: step {event.step} twice")
          array = tf.make_ndarray(v.tensor)
          values[event.step] = (float(array) if array.ndim == 0
                                else len(array) - 2)
  return out
