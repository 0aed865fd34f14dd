"""Head-phase feature cache: the backbone's pooled features, computed once.

When only the head learns (the --head_epochs phase, or --freeze=backbone)
every layer before it is frozen, BatchNorms in inference mode, so the
backbone is a fixed function of the image; with --augment=none each image is
the same every epoch.  The pooled features (the head's input) are then
computed once per image, and each epoch trains the head on them in the very
batches the image stream would give (same shuffle of the same training list,
same unreadable files dropped, same skip on resume), through the same
optimizer and loss (steps.train): the head equals, to float rounding, the
one trained through the frozen backbone (feature_cache_test).  TF Hub's
retrain.py ("bottlenecks") and Keras' transfer-learning guide do the same.

Features live in memory up to MEMORY_LIMIT bytes, beyond that in a .npy file
(memory-mapped) in the run directory, deleted when the phase ends; they are
recomputed when a run resumes.  Image folders only (--data_dir), the
default strategy (one device); elsewhere the head trains through the backbone
as before and the run says why once.
"""

import os
import time

import numpy as np
import tensorflow as tf

from mobilenet.keras import data as data_lib
from mobilenet.keras import finetune
from mobilenet.keras import pipeline
from mobilenet.keras import steps as steps_lib

MEMORY_LIMIT = 2 * 2**30
FILE = "feature_cache.npy"


def why_not(trainer):
  """None when the current phase can train on cached features, else the
  reason (a phrase)."""
  cfg = trainer.cfg
  if not cfg.feature_cache:
    return "--nofeature_cache"
  if cfg.qat:  # the backbone's activation ranges learn in every phase
    return "--qat"
  learning = [l.name for l in trainer.model.layers
              if l.trainable and l.weights and l.name != finetune.HEAD]
  if learning:
    return f"{learning[0]} learns"
  if cfg.augment != "none":
    return f"--augment={cfg.augment} changes the images every epoch"
  if not isinstance(trainer.train_data, data_lib.FolderPipeline):
    return "only for image folders (--data_dir)"
  if cfg.strategy != "default":
    return f"not yet with --strategy={cfg.strategy}"
  return None


def for_epoch(trainer):
  """The FeatureCache for the trainer's current phase (built on first use,
  dropped when the phase no longer fits), or None."""
  cache = getattr(trainer, "feature_cache", None)
  reason = why_not(trainer)
  if reason is not None:
    if cache is not None:
      cache.close()
      trainer.feature_cache = None
    head_only = not any(l.trainable and l.weights for l in trainer.model.layers
                        if l.name != finetune.HEAD)
    if head_only and trainer.cfg.feature_cache and not getattr(
        trainer, "_cache_reason_said", False):
      trainer._cache_reason_said = True  # pylint: disable=protected-access
      trainer.log(f"feature cache off ({reason}): the head trains through "
                  "the frozen backbone")
    return None
  if cache is None:
    cache = trainer.feature_cache = FeatureCache(trainer)
  return cache


class FeatureCache:
  """Pooled features of every training image (file order) and the head's
  train step on them."""

  def __init__(self, trainer):
    cfg = trainer.cfg
    data = trainer.train_data
    self.labels = np.asarray(data.split.labels, np.int64)
    n = len(self.labels)
    head = trainer.model.get_layer(finetune.HEAD)
    import keras  # pylint: disable=g-import-not-at-top
    backbone = keras.Model(trainer.model.inputs, head.input)
    width = int(head.input.shape[-1])
    self.path = None
    if n * width * 4 > MEMORY_LIMIT:
      self.path = os.path.join(cfg.checkpoint_dir, FILE)
      os.makedirs(cfg.checkpoint_dir, exist_ok=True)
      self.features = np.lib.format.open_memmap(
          self.path, mode="w+", dtype=np.float32, shape=(n, width))
    else:
      self.features = np.zeros((n, width), np.float32)
    self.readable = np.zeros(n, bool)
    where = self.path or "memory"
    trainer.log(f"feature cache: pooled features of {n} training images "
                f"({n * width * 4 / 2**20:.0f} MB, {where}), computed once "
                "for the head phase")
    start = time.time()
    # Index travels as the label: pipeline.images drops unreadable files.
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(data.split.paths), tf.range(n, dtype=tf.int64)))
    ds = pipeline.images(ds.map(lambda p, i: ((p,), i)), data._load,  # pylint: disable=protected-access
                         data.size, data.channels, data.skipped)
    extract = tf.function(lambda x: backbone(x, training=False))
    bar = trainer._progbar(-(-n // cfg.batch_size))  # pylint: disable=protected-access
    for done, (images, index) in enumerate(
        ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)):
      index = index.numpy()
      self.features[index] = extract(images).numpy()
      self.readable[index] = True
      if bar:
        bar.update(done + 1)
    trainer.log(f"feature cache ready in {time.time() - start:.0f} s")
    spec = trainer._distribute(self.dataset(cfg.batch_size)).element_spec  # pylint: disable=protected-access
    self.train_step = steps_lib.train(
        lambda f: head(f, training=True), lambda: head.trainable_variables,
        trainer.optimizer, trainer.strategy, cfg.batch_size, spec, trainer,
        cfg.label_smoothing)

  def dataset(self, batch_size, shuffle_seed=None, skip_batches=0):
    """(features, labels) batches in the order FolderPipeline.dataset gives
    the images of the same seed."""
    n = len(self.labels)
    ds = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
      ds = ds.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=False)
    readable = tf.constant(self.readable)
    ds = ds.filter(lambda i: tf.gather(readable, i)).batch(batch_size)
    if skip_batches:
      ds = ds.skip(skip_batches)
    width = self.features.shape[1]

    def gather(index):
      return self.features[index], self.labels[index]

    def load(index):
      features, labels = tf.numpy_function(
          gather, [index], (tf.float32, tf.int64), stateful=False)
      features.set_shape((None, width))
      labels.set_shape((None,))
      return features, labels

    return ds.map(load).prefetch(tf.data.AUTOTUNE)

  def close(self):
    self.features = None
    if self.path and os.path.exists(self.path):
      os.remove(self.path)

