"""The labelled images `evaluate` scores: an image folder (one sub-folder per
class, as `train` reads) or sharded TFRecords (record_schema, as
`make_tfrecords` writes and `train --train_files` reads).

Images are decoded by the core preprocessing (Pillow), once per model input
shape; an unreadable image is skipped and counted, as in training.  A
TFRecord set is read through once before any model runs, so a truncated or
corrupt shard fails in seconds, not after the evaluation.
"""

import os

import numpy as np

from mobilenet.core import preprocess
from mobilenet.keras import folders
from mobilenet.keras import record_schema

DataError = folders.DataError


class Images:
  """Labelled images: `class_names`, `len()`, and `batches()` of
  (names, payloads, labels) where a payload is a path or encoded bytes."""

  def __init__(self, class_names, names, payloads, labels, what):
    self.class_names = list(class_names)
    self.names, self.payloads = names, payloads
    self.labels = np.asarray(labels, np.int64)
    self.what = what

  def __len__(self):
    return len(self.labels)

  def batches(self, batch_size):
    for i in range(0, len(self), batch_size):
      j = i + batch_size
      yield self.names[i:j], self.payloads[i:j], self.labels[i:j]


def decode(names, payloads, size, channels, skipped):
  """(uint8 pixels (n', size, size, channels), indices of the decoded ones);
  unreadable images go to `skipped` (name -> problem)."""
  out, kept = [], []
  for i, (name, payload) in enumerate(zip(names, payloads)):
    try:
      if isinstance(payload, bytes):
        image = preprocess.decode_image(payload, size=size, channels=channels,
                                        name=name)
      else:
        image = preprocess.load_image(payload, size=size, channels=channels)
    except preprocess.ImageError as e:
      skipped[name] = str(e)
      continue
    out.append(image)
    kept.append(i)
  if not out:
    return np.zeros((0, size, size, channels), np.uint8), kept
  return np.stack(out), kept


def _folder(path):
  split, classes = folders.scan_folder(path, what="--data")
  return Images(classes, list(split.paths), list(split.paths), split.labels,
                path)


def _records(pattern):
  records = record_schema.RecordFiles(pattern, what="--data")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  names, payloads, labels = [], [], []
  for path in records.files:
    shard = os.path.basename(path)
    try:
      for raw in tf.data.TFRecordDataset(path):
        f = record_schema.parse(raw)
        filename = f[record_schema.FILENAME].numpy().decode("utf8")
        names.append(f"{filename or len(names)} ({shard})")
        payloads.append(f[record_schema.ENCODED].numpy())
        labels.append(int(f[record_schema.LABEL].numpy()))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      problem = (e.message or type(e).__name__).splitlines()[0]
      raise DataError(f"--data: {path} is truncated or corrupt after "
                      f"{len(labels)} records ({problem}); rewrite the shards "
                      "with //tools:make_tfrecords.") from None
  if len(labels) != len(records):
    raise DataError(f"--data={pattern}: read {len(labels)} records, the "
                    f"sidecar {records.sidecar} lists {len(records)}; "
                    "rewrite the shards with //tools:make_tfrecords.")
  bad = [l for l in labels if not 0 <= l < len(records.class_names)]
  if bad:
    raise DataError(f"--data={pattern}: label {bad[0]} is outside the "
                    f"sidecar's {len(records.class_names)} classes; rewrite "
                    "the shards with //tools:make_tfrecords.")
  return Images(records.class_names, names, payloads, labels, pattern)


def load(spec):
  """Images of a folder, or of the TFRecord shards a file pattern matches."""
  if not spec:
    raise DataError("--data is not set; pass an image folder (one "
                    "sub-folder per class) or a TFRecord pattern such as "
                    "'shards/val-*'.")
  if os.path.isdir(spec):
    return _folder(spec)
  if not os.path.exists(spec) and not any(c in spec for c in "*?["):
    raise DataError(f"--data={spec}: no such folder or TFRecord file.")
  return _records(spec)
