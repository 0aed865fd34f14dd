"""tf.data pipelines over sharded TFRecords (`train --train_files`).

The shards' order is shuffled per epoch (seeded), read by a deterministic
parallel interleave, records shuffled in a seeded buffer, then decoded,
augmented and normalized by pipeline.images: the very path folders take, so
a file's pixels are bit-identical either way and the stream is a fixed
function of the seed (an interrupted epoch resumes by skipping batches).
Each record's augmentation is keyed by its shard name and place in the shard,
not its position in the stream, so it is the same however many workers
share the shards.

Under a multi-worker strategy each worker reads its own whole shards
(tf.data AutoShardPolicy.FILE): write at least as many shards as workers,
ideally a multiple, so workers get equal work.
"""

import math
import re
from typing import Optional

import tensorflow as tf

from mobilenet.core import preprocess
from mobilenet.keras import augment as augment_lib
from mobilenet.keras import record_check
from mobilenet.keras import record_schema
from mobilenet.keras import train_config
from mobilenet.keras.pipeline import images

# Records (encoded images, ~100 KB each for ImageNet photos) held for
# shuffling; with the interleave over shards this mixes classes well when
# the shards are themselves shuffled, as make_tfrecords writes them.
SHUFFLE_BUFFER = 2048
# Shards read at once.
CYCLE_LENGTH = 8


def record_key(shard_name, index):
  """Augmentation key of record `index` of shard file `shard_name`."""
  return tf.strings.to_hash_bucket_fast(
      tf.strings.join([shard_name, ":", tf.strings.as_string(index)]), 2**31)


class RecordPipeline:
  """Same interface as data.FolderPipeline, over record_schema.RecordFiles."""

  def __init__(self, records, input_size, channels, skipped, augment=None,
               shuffle_buffer=SHUFFLE_BUFFER):
    self.records = records
    self.files = list(records.files)
    self.augment = augment  # augment.PRESETS value, training stream only
    self.size = int(input_size)
    self.channels = int(channels)
    self.skipped = skipped
    self.shuffle_buffer = int(shuffle_buffer)

  def steps(self, batch_size):
    return math.ceil(len(self.records) / batch_size)

  def _load(self, name, encoded):
    return preprocess.decode_image(encoded, size=self.size,
                                   channels=self.channels,
                                   name=name.decode("utf8"))

  def examples(self, shuffle_seed: Optional[int] = None):
    """((image name, encoded bytes), label, key) in stream order, undecoded;
    `key` identifies the record (its shard's name and place in it), so its
    augmentation is the same whichever worker reads it and wherever the
    shuffle puts it."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(self.files))
    if shuffle_seed is not None:
      ds = ds.shuffle(len(self.files), seed=shuffle_seed,
                      reshuffle_each_iteration=False)

    def read(path):
      # enumerate() inside the interleave: the file list stays the only
      # source outside it, which tf.data's FILE auto-sharding needs.
      shard = tf.strings.regex_replace(path, ".*/", "")
      return tf.data.TFRecordDataset(path).enumerate().map(
          lambda i, r: (r, record_key(shard, i)))

    ds = ds.interleave(read, cycle_length=min(len(self.files), CYCLE_LENGTH),
                       block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)
    if shuffle_seed is not None and self.shuffle_buffer > 1:
      ds = ds.shuffle(self.shuffle_buffer, seed=shuffle_seed,
                      reshuffle_each_iteration=False)

    def unpack(serialized, key):
      f = record_schema.parse(serialized)
      name = tf.strings.join([f[record_schema.FILENAME], " (",
                              self.records.what, ")"])
      return (name, f[record_schema.ENCODED]), f[record_schema.LABEL], key

    ds = ds.map(unpack, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE)
    return ds.with_options(options)

  def input_error(self, error):
    """One line naming the fault when `error`, raised while reading this
    pipeline, means the shards are damaged (the header walk at start-up
    catches truncation; a bad byte inside a record shows only when it is
    read) or hold records of another kind; else None."""
    what, fix = self.records.what, FIX
    if isinstance(error, tf.errors.DataLossError):
      detail = tf_error_detail(error)
      found = re.search(r" at (\d+)", detail)
      bad = record_check.locate(self.files, int(found[1])) if found else []
      where = (f"shard {', '.join(bad)}" if bad else
               f"a shard of {self.records.sidecar}")
      return f"{what}: {where} is damaged ({detail}); {fix}"
    parse = isinstance(error, tf.errors.InvalidArgumentError) and (
        "Feature:" in str(error) or "parse" in str(error).lower())
    if parse or isinstance(error, UnicodeDecodeError):
      return (f"{what}: a record of {self.records.sidecar}'s shards is not "
              f"a {record_schema.SCHEMA} image record "
              f"({tf_error_detail(error)}); {fix}")
    return None

  def dataset(self, batch_size, shuffle_seed: Optional[int] = None,
              skip_batches=0, augment=True):
    """Batches; arguments as data.FolderPipeline.dataset."""
    ds = images(self.examples(shuffle_seed), self._load, self.size,
                self.channels, self.skipped, self.augment,
                shuffle_seed if augment else None).batch(batch_size)
    if skip_batches:
      ds = ds.skip(skip_batches)
    return ds.prefetch(tf.data.AUTOTUNE)


FIX = ("copy the shard again or rewrite the set with //tools:make_tfrecords "
       "(its --verify names every bad shard)")


def tf_error_detail(error):
  """TensorFlow's message without its node and op decorations."""
  text = str(getattr(error, "message", None) or error)
  text = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]( name: \S*)?",
                "", text)
  text = text.split("transformation with iterator:")[-1]
  text = re.sub(r"Iterator::\S+:?", "", text)
  return " ".join(text.split()).strip(" :") or type(error).__name__


def load(cfg, skipped):
  """(train pipeline, validation pipeline, class names, skip counter)."""
  train, val, names = train_config.scan_records(cfg)
  return (RecordPipeline(train, cfg.input_size, cfg.channels, skipped,
                         augment_lib.PRESETS[cfg.augment]),
          RecordPipeline(val, cfg.input_size, cfg.channels, skipped),
          names, skipped)
