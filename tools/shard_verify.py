"""`make_tfrecords --verify`: reads every record of a shard set against its
sidecar and says which shard is bad and why.

Per shard: present; whole (record_check.walk: it does not end inside a
record); every record's CRC (TensorFlow's reader); every record a
tf.train.Example of the schema with a label in range; as many records as
the sidecar lists.  The images themselves are not decoded: `train` skips and
counts an undecodable one, as in a folder.
"""

import os

from mobilenet.keras import record_check
from mobilenet.keras import record_schema


def _read(path, classes):
  """(records, problem) of reading every record of `path` with TF."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mobilenet.keras import records  # pylint: disable=g-import-not-at-top
  count = 0
  ds = tf.data.TFRecordDataset(path).map(
      lambda r: record_schema.parse(r)[record_schema.LABEL])
  try:
    for label in ds:
      if not 0 <= int(label) < classes:
        return count, (f"record {count + 1} has label {int(label)}, the "
                       f"sidecar names {classes} classes")
      count += 1
  except (tf.errors.OpError, UnicodeDecodeError) as e:
    return count, (f"record {count + 1} is unreadable "
                   f"({records.tf_error_detail(e)})")
  return count, None


def verify(out_dir, prefix, report=print):
  """Checks the set `<out_dir>/<prefix>-*` listed in `<prefix>.json`;
  `report` gets a line per shard.  Returns (shards, records, bad) where
  bad is a list of "shard: problem"."""
  sidecar = record_schema.sidecar_path(out_dir, prefix)
  doc = record_schema.read_sidecar(sidecar, "--verify")
  classes = len(doc["class_names"])
  bad, total = [], 0
  for name, expected in sorted(doc["shards"].items()):
    path = os.path.join(out_dir, name)
    if not os.path.isfile(path):
      count, problem = 0, "missing"
    else:
      count, problem = record_check.walk(path)
      if problem is None:
        count, problem = _read(path, classes)
    if problem is None and count != int(expected):
      problem = f"it holds {count} records, the sidecar lists {expected}"
    total += count
    if problem is None:
      report(f"ok   {path}: {count} records")
    else:
      report(f"BAD  {path}: {problem}")
      bad.append(f"{path}: {problem}")
  return len(doc["shards"]), total, bad
