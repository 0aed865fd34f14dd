"""The sharded-TFRecord format that //tools:make_tfrecords writes and `train
--train_files` reads: feature keys, the parse function and the sidecar.

Records follow TF-Models' ImageNet readers (`image/encoded`, `image/format`,
`image/class/label`, `image/height`, `image/width`, plus `image/class/text`
and `image/filename`), with two choices of ours:

* `image/class/label` is 0-based, the index into the sidecar's class names
  (train's folder order), with no background class at 0.
* `image/encoded` holds the file's own bytes when it is a JPEG or PNG; any
  other format (BMP, GIF, TIFF, WebP, ...) is stored as a lossless PNG of
  the pixels train decodes from it (upright, alpha over white; grayscale
  when every pixel is gray), so `image/format` is always "JPEG" or "PNG".
  `image/height` / `image/width` are the upright size train decodes.

Shards are `<prefix>-00000-of-00004`, ...; the sidecar `<prefix>.json` beside
them names the classes in label order and counts the records of each shard.
No TensorFlow at import: the CLIs check their input before loading it.
"""

import glob
import json
import os
import re

from mobilenet.core import files
from mobilenet.keras import record_check
from mobilenet.keras.folders import DataError

SCHEMA = "mobilenet_v2.tfrecord_images"
VERSION = 1

ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
TEXT = "image/class/text"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"

_SHARD = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


def shard_name(prefix, index, count):
  return f"{prefix}-{index:05d}-of-{count:05d}"


def shard_prefix(name):
  """The prefix of a shard file name, None if it is not one."""
  m = _SHARD.match(name)
  return m["prefix"] if m else None


def sidecar_path(directory, prefix):
  return os.path.join(directory, prefix + ".json")


def image_format(data):
  """"JPEG" or "PNG" from the file's magic bytes (not its name), else None."""
  if data[:3] == b"\xff\xd8\xff":
    return "JPEG"
  if data[:8] == b"\x89PNG\r\n\x1a\n":
    return "PNG"
  return None


# ---- records ----------------------------------------------------------------


def example(encoded, fmt, label, text, height, width, filename):
  """One serialized tf.train.Example."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))  # pylint: disable=g-long-lambda
  i = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # pylint: disable=g-long-lambda
  return tf.train.Example(features=tf.train.Features(feature={
      ENCODED: b(encoded), FORMAT: b(fmt.encode()), LABEL: i(int(label)),
      TEXT: b(text.encode("utf8")), HEIGHT: i(int(height)),
      WIDTH: i(int(width)), FILENAME: b(filename.encode("utf8")),
  })).SerializeToString()


def parse(serialized):
  """Tensors of one serialized record (a dict keyed like the features);
  records of other writers may lack the optional keys."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  fixed = tf.io.FixedLenFeature
  spec = {ENCODED: fixed([], tf.string), LABEL: fixed([], tf.int64),
          FORMAT: fixed([], tf.string, default_value=""),
          TEXT: fixed([], tf.string, default_value=""),
          HEIGHT: fixed([], tf.int64, default_value=0),
          WIDTH: fixed([], tf.int64, default_value=0),
          FILENAME: fixed([], tf.string, default_value="")}
  return tf.io.parse_single_example(serialized, spec)


# ---- the sidecar --------------------------------------------------------------


def write_sidecar(directory, prefix, class_names, shard_counts, class_counts,
                  skipped, source):
  """`<prefix>.json` (whole or not at all); returns what it holds."""
  doc = {"schema": SCHEMA, "version": VERSION, "class_names": class_names,
         "label": "0-based index into class_names",
         "num_records": sum(shard_counts.values()),
         "class_counts": class_counts, "shards": shard_counts,
         "skipped_files": skipped, "source": source}
  files.atomic_write(sidecar_path(directory, prefix),
                     json.dumps(doc, indent=1) + "\n")
  return doc


def read_sidecar(path, what):
  fix = ("write shards and sidecar with //tools:make_tfrecords "
         "(docs/tfrecords.md)")
  try:
    with open(path, encoding="utf8") as f:
      doc = json.load(f)
  except FileNotFoundError:
    raise DataError(f"{what}: no sidecar {path} beside the shards; {fix}."
                    ) from None
  except (OSError, ValueError) as e:
    raise DataError(f"{what}: cannot read sidecar {path} ({e}); {fix}."
                    ) from None
  if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
    raise DataError(f"{what}: {path} is not a {SCHEMA} sidecar; {fix}.")
  if doc.get("version") != VERSION:
    raise DataError(f"{what}: {path} has schema version "
                    f"{doc.get('version')}, this train reads {VERSION}; "
                    "rewrite the shards with this //tools:make_tfrecords.")
  names, shards = doc.get("class_names"), doc.get("shards")
  if (not isinstance(names, list) or len(names) < 2 or
      not isinstance(shards, dict)):
    raise DataError(f"{what}: {path} lacks class_names (2 or more) or "
                    f"shards; {fix}.")
  return doc


class RecordFiles:
  """Shards matched by a file pattern, with their sidecar's classes."""

  def __init__(self, pattern, what="--train_files"):
    if not pattern:
      raise DataError(f"{what} is not set; pass a shard pattern such as "
                      "'shards/train-*'.")
    matched = sorted(p for p in glob.glob(pattern)
                     if os.path.isfile(p) and not p.endswith(".json")
                     and not os.path.basename(p).startswith("."))
    if not matched:
      raise DataError(f"{what}={pattern} matches no files; quote the pattern "
                      "(e.g. 'shards/train-*') and check the directory.")
    sidecars = set()
    for p in matched:
      prefix = shard_prefix(os.path.basename(p))
      if not prefix:
        raise DataError(f"{what}={pattern} matches {p}, which is not a shard "
                        "named <prefix>-NNNNN-of-NNNNN; narrow the pattern.")
      sidecars.add(sidecar_path(os.path.dirname(p), prefix))
    if len(sidecars) > 1:
      raise DataError(f"{what}={pattern} matches shards of "
                      f"{len(sidecars)} sets ({', '.join(sorted(sidecars))});"
                      " narrow the pattern to one prefix.")
    self.sidecar = sidecars.pop()
    doc = read_sidecar(self.sidecar, what)
    unknown = [p for p in matched if os.path.basename(p) not in doc["shards"]]
    if unknown:
      raise DataError(f"{what}: {unknown[0]} is not listed in "
                      f"{self.sidecar} (left from another run?); remove it or "
                      "rewrite the shards.")
    for p in matched:  # an interrupted copy fails here, before training
      record_check.check(p, int(doc["shards"][os.path.basename(p)]), what)
    self.files = matched
    self.class_names = list(doc["class_names"])
    self.count = sum(int(doc["shards"][os.path.basename(p)]) for p in matched)
    self.what = what

  def __len__(self):
    return self.count
