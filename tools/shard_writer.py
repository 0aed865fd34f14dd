"""Image folder -> sharded TFRecords with their sidecar (the schema is
mobilenet/keras/record_schema.py); //tools:make_tfrecords is its command
line, the benchmark's P7 and the tests write shards with it too.

Images are shuffled (seeded) and dealt round-robin to the shards, so every
shard mixes all classes; unreadable images are skipped and counted; shards
are written to temp files and renamed only when all are complete.
"""

import concurrent.futures
import io
import os

import numpy as np
from PIL import Image

from mobilenet.core import cli
from mobilenet.core import preprocess
from mobilenet.core.progress import Progress
from mobilenet.keras import folders
from mobilenet.keras import record_schema

# Images decoded (checked and measured) at once, in parallel threads; Pillow
# releases the GIL while it decodes.
_CHUNK = 256


def encode_record(path, label, text, root):
  """Serialized record of one image file; raises preprocess.ImageError."""
  with open(path, "rb") as f:
    data = f.read()
  pixels = preprocess.decode_image(data, channels=3, name=path)
  fmt = record_schema.image_format(data)
  if fmt is None:
    # Lossless PNG of what train decodes; 1 channel when it is all gray.
    gray = (np.array_equal(pixels[..., 0], pixels[..., 1]) and
            np.array_equal(pixels[..., 0], pixels[..., 2]))
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if gray else pixels).save(buf, "PNG")
    data, fmt = buf.getvalue(), "PNG"
  return record_schema.example(data, fmt, label, text, pixels.shape[0],
                               pixels.shape[1], os.path.relpath(path, root))


def write_shards(data_dir, out_dir, prefix="train", num_shards=4, seed=0,
                 overwrite=False, progress=True):
  """Writes the shards and sidecar; returns the sidecar's dict."""
  split, names = folders.scan_folder(data_dir)
  existing = _existing(out_dir, prefix)
  if existing and not overwrite:
    raise cli.UsageError(f"--out_dir={out_dir} already holds {existing[0]}; "
                         "pass --overwrite or choose another --prefix.")
  if not 1 <= num_shards <= len(split):
    raise cli.UsageError(f"--num_shards must be in [1, {len(split)}] (the "
                         f"number of images), got {num_shards}.")
  order = np.random.default_rng(seed).permutation(len(split))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shards = [record_schema.shard_name(prefix, i, num_shards)
            for i in range(num_shards)]
  temps = [os.path.join(out_dir, f".{s}.tmp") for s in shards]
  made_dir = not os.path.isdir(out_dir)
  counts = [0] * num_shards
  class_counts = [0] * len(names)
  skipped = []
  bar = Progress(len(split)) if progress else None
  try:
    os.makedirs(out_dir, exist_ok=True)
    writers = [tf.io.TFRecordWriter(t) for t in temps]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      for begin in range(0, len(order), _CHUNK):
        chunk = order[begin:begin + _CHUNK]
        for i, (record, problem) in zip(chunk, pool.map(
            lambda i: _try_encode(split, names, data_dir, i), chunk)):
          if record is None:
            skipped.append(problem)
            continue
          n = sum(counts)
          writers[n % num_shards].write(record)
          counts[n % num_shards] += 1
          class_counts[split.labels[i]] += 1
        if bar:
          bar.update(begin + len(chunk), len(skipped))
    for w in writers:
      w.close()
    if sum(counts) < num_shards:
      raise folders.DataError(
          f"--data_dir={data_dir}: only {sum(counts)} readable image(s) for "
          f"{num_shards} shards ({len(skipped)} skipped: {skipped[0]}).")
    for path in existing:
      os.remove(path)
    for temp, shard in zip(temps, shards):
      os.replace(temp, os.path.join(out_dir, shard))
  except BaseException:
    for t in temps:
      if os.path.exists(t):
        os.remove(t)
    if made_dir and os.path.isdir(out_dir) and not os.listdir(out_dir):
      os.rmdir(out_dir)
    raise
  return record_schema.write_sidecar(
      out_dir, prefix, names, dict(zip(shards, counts)),
      dict(zip(names, class_counts)), skipped, os.path.abspath(data_dir))


def _try_encode(split, names, root, i):
  path, label = split.paths[i], split.labels[i]
  try:
    return encode_record(path, label, names[label], root), None
  except preprocess.ImageError as e:
    return None, str(e)


def _existing(out_dir, prefix):
  if not os.path.isdir(out_dir):
    return []
  found = sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir)
                 if f == prefix + ".json" or (
                     f.startswith(prefix + "-") and
                     record_schema.shard_prefix(f) == prefix))
  return found
