"""P8: a head-phase epoch on cached features against one through the frozen
backbone, both through mobilenet.keras.train_lib.Trainer.epoch_stream (the
batches and train step the epoch loop runs)."""

import os
import tempfile
import time

from absl import logging

from mobilenet.core import labels as labels_lib
from tools import benchmark_harness as harness


def digit_subset(root, count):
  """`count` of the held-out digits (the first of each class in turn) as
  an image folder of symlinks."""
  source = labels_lib.data_path("mnist_heldout")
  classes = sorted(os.listdir(source))
  files = {c: sorted(os.listdir(os.path.join(source, c))) for c in classes}
  for i in range(count):
    c = classes[i % len(classes)]
    os.makedirs(os.path.join(root, c), exist_ok=True)
    name = files[c][i // len(classes)]
    os.symlink(os.path.join(source, c, name), os.path.join(root, c, name))
  return root


def head_epoch(cfg, seed):
  """Seconds (median) of one head-phase epoch (--freeze=backbone
  --augment=none) of `cfg.head_images` digits, cached and uncached, and the
  cache's one-time build."""
  from mobilenet.keras import train_lib  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="benchmark_head_") as tmp:
    data = digit_subset(os.path.join(tmp, "digits"), cfg.head_images)
    trainers = {}
    for cached in (True, False):
      trainers[cached] = train_lib.Trainer(train_lib.Config(
          data_dir=data, alpha=cfg.alpha, input_size=cfg.size, channels=3,
          batch_size=cfg.train_batch, seed=seed, freeze="backbone",
          augment="none", feature_cache=cached, tensorboard=False,
          checkpoint_dir=os.path.join(tmp, str(cached)), verbose=0),
                                           log=logging.info)
    start = time.perf_counter()
    trainers[True].epoch_stream(0)  # builds the cache
    build = time.perf_counter() - start
    cache = trainers[True].feature_cache
    if cache is None:
      raise ValueError("P8: the feature cache did not apply")
    epochs = {True: 0, False: 0}

    def epoch(cached):
      def run():
        trainer = trainers[cached]
        epochs[cached] += 1
        batches, step = trainer.epoch_stream(epochs[cached])
        return trainer.train_batches(batches, step)
      return run

    images = int(epoch(False)()[2])
    medians, _ = harness.interleaved(
        {"cached": epoch(True), "uncached": epoch(False)},
        cfg.train_rounds, 1, 1, "P8")
    cache.close()
  return {"images": images, "cache_build": build, **medians}
