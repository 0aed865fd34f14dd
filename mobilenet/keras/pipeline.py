"""The one path from encoded images to model input that every image source
(folders: data.py, sharded TFRecords: records.py) feeds.

Decoding is the core preprocess library (Pillow) inside tf.numpy_function,
so a file's pixels are the same whichever container they came in;
augmentation is stateless, keyed by (epoch shuffle seed, a key per image that
the source chooses), so a stream is a fixed function of the seed;
unreadable images are dropped and counted, not fatal.
"""

import threading

import numpy as np
import tensorflow as tf

from mobilenet.core import preprocess
from mobilenet.keras.folders import DataError


class SkipCounter:
  """Unreadable files met by a pipeline (thread-safe: tf.data runs the
  decoder on several threads)."""

  def __init__(self):
    self._lock = threading.Lock()
    self.failures = {}

  def add(self, path, problem):
    with self._lock:
      self.failures[path] = problem

  def __len__(self):
    return len(self.failures)

  def summary(self):
    items = sorted(self.failures.items())
    shown = "; ".join(p for _, p in items[:3])
    more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
    return f"{len(items)} unreadable image(s) skipped: {shown}{more}"


def checked(batches, source):
  """Iterates `batches` (a dataset of the pipeline `source`, distributed or
  not).  An error that `source.input_error` blames on the input (a damaged
  TFRecord shard) becomes a DataError with its one line; any other error
  (a lost peer, a bug) passes unchanged."""
  it = iter(batches)
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except (tf.errors.OpError, UnicodeDecodeError) as e:
      # UnicodeDecodeError: TensorFlow failing to word an error about
      # records that are not tf.train.Examples.
      blame = getattr(source, "input_error", lambda _: None)(e)
      if blame is None:
        raise
      raise DataError(blame) from None
    yield batch


def normalize_tf(images_uint8):
  """[-1, 1] exactly as preprocess.preprocess_input (x / 127.5 - 1)."""
  x = tf.cast(images_uint8, tf.float32)
  return x / 127.5 - 1.0


def images(ds, load, size, channels, skipped, augment=None,
           augment_seed=None):
  """(inputs, label[, key]) elements -> (normalized image, label).

  `inputs` is a tuple of string tensors whose first is the image's name;
  `load(*inputs as bytes)` returns its uint8 (size, size, channels) pixels
  or raises preprocess.ImageError.  With `augment` and `augment_seed` each
  element carries an int64 `key` and is augmented with the stateless seed
  (augment_seed, key): the source decides what identifies an image.
  """
  size, channels = int(size), int(channels)
  augmenting = augment is not None and augment_seed is not None

  def decode(*inputs):
    try:
      return load(*inputs), True
    except preprocess.ImageError as e:
      skipped.add(inputs[0].decode("utf8"), str(e))
      return np.zeros((size, size, channels), np.uint8), False

  def prepare(inputs, label, key=None):
    image, ok = tf.numpy_function(decode, list(inputs), (tf.uint8, tf.bool),
                                  stateful=False)
    image.set_shape((size, size, channels))
    ok.set_shape(())
    if augmenting:
      image = tf.cast(image, tf.float32)
      seed = tf.stack([tf.cast(augment_seed % 2**31, tf.int32),
                       tf.cast(key, tf.int32)])
      image = augment(image, seed)
    return image, label, ok

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  ds = ds.filter(lambda image, label, ok: ok)
  return ds.map(lambda image, label, ok: (normalize_tf(image), label))
