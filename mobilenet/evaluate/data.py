"""The labelled images `evaluate` scores: an image folder (one sub-folder per
class, as `train` reads) or sharded TFRecords (record_schema, as
`make_tfrecords` writes and `train --train_files` reads).

Images are decoded by the core preprocessing (Pillow), once per model input
shape; an unreadable image is skipped and counted, as in training.  A
TFRecord set is read through once before any model runs, so a truncated or
corrupt shard fails in seconds, not after the evaluation; the images
themselves are read again, batch by batch, as the models run.
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

  def __init__(self, class_names, names, labels, what, payloads=None,
               shards=None):
    self.class_names = list(class_names)
    self.names = names
    self.labels = np.asarray(labels, np.int64)
    self.what = what
    self._payloads = payloads  # file paths; None: read from `shards`
    self._shards = shards

  def __len__(self):
    return len(self.labels)

  def _all_payloads(self):
    if self._payloads is not None:
      yield from self._payloads
      return
    for path in self._shards:  # streamed: a data set need not fit in memory
      for raw in _read(path):
        yield record_schema.parse(raw)[record_schema.ENCODED].numpy()

  def batches(self, batch_size):
    payloads = self._all_payloads()
    for i in range(0, len(self), batch_size):
      j = min(i + batch_size, len(self))
      yield (self.names[i:j], [next(payloads) for _ in range(i, j)],
             self.labels[i:j])


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
  return Images(classes, list(split.paths), split.labels, path,
                payloads=list(split.paths))


def _read(path):
  """Serialized records of one shard; DataError when it is cut short."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  count = 0
  try:
    for raw in tf.data.TFRecordDataset(path):
      count += 1
      yield raw
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    problem = (e.message or type(e).__name__).splitlines()[0]
    raise DataError(f"--data: {path} is truncated or corrupt after {count} "
                    f"records ({problem}); rewrite the shards with "
                    "//tools:make_tfrecords.") from None


def _records(pattern):
  """Shards read through once (names and labels only) before any model runs:
  a cut or corrupt shard fails now, not after the evaluation."""
  records = record_schema.RecordFiles(pattern, what="--data")
  names, labels = [], []
  for path in records.files:
    shard = os.path.basename(path)
    for raw in _read(path):
      f = record_schema.parse(raw)
      filename = f[record_schema.FILENAME].numpy().decode("utf8")
      names.append(f"{filename or len(names)} ({shard})")
      labels.append(int(f[record_schema.LABEL].numpy()))
  if len(labels) != len(records):
    raise DataError(f"--data={pattern}: read {len(labels)} records, the "
                    f"sidecar {records.sidecar} lists {len(records)}; "
                    "rewrite the shards with //tools:make_tfrecords.")
  bad = [l for l in labels if not 0 <= l < len(records.class_names)]
  if bad:
    raise DataError(f"--data={pattern}: label {bad[0]} is outside the "
                    f"sidecar's {len(records.class_names)} classes; rewrite "
                    "the shards with //tools:make_tfrecords.")
  return Images(records.class_names, names, labels, pattern,
                shards=records.files)


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
