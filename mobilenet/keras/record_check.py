"""Is a TFRecord shard whole?  A walk over its record headers, without
TensorFlow and without reading the images.

A TFRecord file is a chain of records: an 8-byte little-endian length, a
masked CRC-32C of those 8 bytes, the data, a masked CRC-32C of the data.
Walking the chain reads 12 bytes a record and seeks over the rest, so it
checks a shard set of any size in about the time `ls -l` takes per record
(measured in docs/training_input_errors.md), and finds what an interrupted
copy leaves: a file that ends inside a record, or fewer records than the
sidecar lists.  A flipped bit inside an image's bytes needs the data CRC,
i.e. reading everything: TensorFlow reports it when training reaches the
record, and `make_tfrecords --verify` reads every record up front.
"""

import os
import struct

from mobilenet.keras.folders import DataError

_MASK_DELTA = 0xA282EAD8


def _table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return table


_TABLE = _table()


def masked_crc32c(data):
  """TFRecord's masked CRC-32C (Castagnoli) of `data` (bytes)."""
  crc = 0xFFFFFFFF
  for b in data:
    crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def walk(path):
  """(records, problem): the number of whole records in the shard at
  `path`, and None or what is wrong with it (a phrase)."""
  size = os.path.getsize(path)
  count = 0
  with open(path, "rb") as f:
    while True:
      start = f.tell()
      header = f.read(12)
      if not header:
        return count, None
      if len(header) < 12:
        return count, (f"it ends inside the header of record {count + 1} "
                       f"(byte {size} of at least {start + 12})")
      length, crc = struct.unpack("<QI", header)
      if masked_crc32c(header[:8]) != crc:
        return count, (f"the header of record {count + 1} (byte {start}) "
                       "is corrupt; it is not a TFRecord file, or damaged")
      end = start + 12 + length + 4
      if end > size:
        return count, (f"it ends inside record {count + 1} (byte {size} of "
                       f"at least {end})")
      f.seek(end)
      count += 1


# (path, size, mtime) of shards found whole: train checks its sets on the
# command line and again in the trainer.
_WHOLE = set()


def check(path, expected, what):
  """Raises DataError naming `path` when the shard is not `expected` whole
  records (the sidecar's count)."""
  stat = os.stat(path)
  key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, expected)
  if key in _WHOLE:
    return
  count, problem = walk(path)
  if problem is None and count != expected:
    problem = (f"it holds {count} records, its sidecar lists {expected}")
  if problem is not None:
    raise DataError(f"{what}: shard {path} is truncated or damaged: "
                    f"{problem}; copy it again or rewrite the set with "
                    "//tools:make_tfrecords (its --verify checks a set).")
  _WHOLE.add(key)


def _damaged_at(path, offset):
  """Whether the record of `path` that starts at `offset` (or whose data
  does: TensorFlow reports either) fails its CRC or is cut short."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    start = 0
    while start <= offset and start + 12 <= size:
      f.seek(start)
      length, _ = struct.unpack("<QI", f.read(12))
      if offset in (start, start + 12):
        if start + 12 + length + 4 > size:
          return True
        data = f.read(length)
        (crc,) = struct.unpack("<I", f.read(4))
        return masked_crc32c(data) != crc
      start += 12 + length + 4
  return False


def locate(paths, offset):
  """The shards among `paths` with a damaged record at byte `offset`, the
  position TensorFlow's DataLossError names (it does not name the file)."""
  return [p for p in paths if _damaged_at(p, offset)]
