"""//tools:make_tfrecords: files on disk -> shards -> the same bytes, labels
and sizes back; skipped files; nothing partial on error; one-line errors."""

import io
import json
import os
from unittest import mock

from absl.testing import absltest
import numpy as np
from PIL import Image
import tensorflow as tf

from mobilenet.core import preprocess
from mobilenet.keras import record_schema
from mobilenet.testing import images
from mobilenet.testing import tools
from tools import shard_writer

TOOL = "tools/make_tfrecords.py"


def _folder(root):
  """3 classes x 6 PNGs, 2 unreadable files in c1, plus a BMP, a JPEG stored
  sideways (EXIF orientation 6) and a JPEG named .png in c2."""
  images.make_folder(root, classes=3, per_class=6, size=32)
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)
  Image.fromarray(pixels).save(os.path.join(root, "c2", "x_bitmap.bmp"))
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90: upright it is 30 high, 20 wide
  Image.fromarray(pixels).save(os.path.join(root, "c2", "x_sideways.jpg"),
                               exif=exif.tobytes())
  Image.fromarray(pixels).save(os.path.join(root, "c2", "x_really_jpeg.png"),
                               "JPEG")
  return root


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _records(paths):
  out = []
  for path in paths:
    for r in tf.data.TFRecordDataset(path):
      f = record_schema.parse(r)
      out.append({k: v.numpy() for k, v in f.items()})
  return out


class RoundTripTest(absltest.TestCase):

  def test_shards_hold_every_readable_file_as_it_is(self):
    root = _folder(self.create_tempdir("in").full_path)
    out = os.path.join(self.create_tempdir().full_path, "shards")
    proc = tools.run_tool(TOOL, f"--data_dir={root}", f"--out_dir={out}",
                          "--num_shards=3")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("21 images of 3 classes in 3 shard(s)", proc.stdout)
    self.assertIn("2 unreadable skipped", proc.stdout)
    self.assertIn("images/s", proc.stderr)  # progress
    shards = [f"train-0000{i}-of-00003" for i in range(3)]
    self.assertCountEqual(os.listdir(out), shards + ["train.json"])
    with open(os.path.join(out, "train.json")) as f:
      side = json.load(f)
    self.assertEqual(side["class_names"], ["c0", "c1", "c2"])
    self.assertEqual(side["version"], record_schema.VERSION)
    self.assertEqual(side["class_counts"], {"c0": 6, "c1": 6, "c2": 9})
    self.assertEqual(sorted(side["shards"].values()), [7, 7, 7])
    self.assertLen(side["skipped_files"], 2)
    self.assertTrue(any("zz_empty.png" in s for s in side["skipped_files"]))

    recs = _records([os.path.join(out, s) for s in shards])
    self.assertEqual([len(_records([os.path.join(out, s)])) for s in shards],
                     [side["shards"][s] for s in shards])
    names = sorted(r[record_schema.FILENAME].decode() for r in recs)
    want = sorted(os.path.relpath(p, root) for p in preprocess.find_images(
        root) if "zz_" not in p)
    self.assertEqual(names, want)
    for r in recs:
      name = r[record_schema.FILENAME].decode()
      path = os.path.join(root, name)
      original = _read(path)
      label = int(name[1])
      self.assertEqual(r[record_schema.LABEL], label, name)
      self.assertEqual(r[record_schema.TEXT].decode(), f"c{label}")
      encoded = r[record_schema.ENCODED]
      with Image.open(io.BytesIO(original)) as im:
        upright = (im.size[::-1] if name.endswith("sideways.jpg") else
                   im.size)
        fmt = {"PNG": b"PNG", "JPEG": b"JPEG"}.get(im.format, b"PNG")
      self.assertEqual(r[record_schema.FORMAT], fmt, name)
      self.assertEqual((r[record_schema.WIDTH], r[record_schema.HEIGHT]),
                       upright, name)
      if name.endswith(".bmp"):  # re-encoded losslessly
        self.assertNotEqual(encoded, original)
        np.testing.assert_array_equal(
            preprocess.decode_image(encoded), preprocess.load_image(path))
      else:
        self.assertEqual(encoded, original, name)

  def test_same_seed_same_bytes_other_seed_other_order(self):
    root = images.make_folder(self.create_tempdir().full_path, per_class=5,
                              bad_files=False)
    base = self.create_tempdir().full_path
    read = lambda d: [_read(os.path.join(d, f))  # pylint: disable=g-long-lambda
                      for f in sorted(os.listdir(d)) if f != "train.json"]
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
      shard_writer.write_shards(root, os.path.join(base, name),
                                  num_shards=2, seed=seed, progress=False)
    self.assertEqual(read(os.path.join(base, "a")),
                     read(os.path.join(base, "b")))
    self.assertNotEqual(read(os.path.join(base, "a")),
                        read(os.path.join(base, "c")))


class AtomicTest(absltest.TestCase):

  def test_error_mid_write_leaves_nothing_and_keeps_old_shards(self):
    root = images.make_folder(self.create_tempdir().full_path, per_class=4,
                              bad_files=False)
    base = self.create_tempdir().full_path
    fresh = os.path.join(base, "fresh")
    real = shard_writer.encode_record
    calls = []

    def failing(*args):
      calls.append(1)
      if len(calls) == 7:
        raise RuntimeError("disk on fire")
      return real(*args)

    with mock.patch.object(shard_writer, "encode_record", failing):
      with self.assertRaisesRegex(RuntimeError, "disk on fire"):
        shard_writer.write_shards(root, fresh, num_shards=2,
                                    progress=False)
    self.assertFalse(os.path.exists(fresh))  # not even the directory

    old = os.path.join(base, "old")
    shard_writer.write_shards(root, old, num_shards=2, progress=False)
    before = {f: _read(os.path.join(old, f)) for f in os.listdir(old)}
    calls.clear()
    with mock.patch.object(shard_writer, "encode_record", failing):
      with self.assertRaisesRegex(RuntimeError, "disk on fire"):
        shard_writer.write_shards(root, old, num_shards=3, overwrite=True,
                                    progress=False)
    after = {f: _read(os.path.join(old, f)) for f in os.listdir(old)}
    self.assertEqual(after, before)


class BadInputTest(absltest.TestCase):

  def _assert_error(self, needle, *args):
    out = os.path.join(self.create_tempdir().full_path, "out")
    proc = tools.run_tool(TOOL, *[a.format(out=out) for a in args])
    self.assertNotEqual(proc.returncode, 0, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    errors = tools.error_lines(proc)
    self.assertLen(errors, 1, proc.stderr)
    self.assertIn(needle, errors[0])
    self.assertFalse(os.path.exists(out))
    return proc

  def test_one_clear_line_and_no_output(self):
    good = images.make_folder(self.create_tempdir().full_path, per_class=2,
                              bad_files=False)
    missing = os.path.join(good, "nope")
    self._assert_error("no such directory", f"--data_dir={missing}",
                       "--out_dir={out}")
    self._assert_error("--data_dir is not set", "--out_dir={out}")
    self._assert_error("--out_dir is not set", f"--data_dir={good}")
    self._assert_error("--num_shards must be in [1, 6]",
                       f"--data_dir={good}", "--out_dir={out}",
                       "--num_shards=7")
    junk = self.create_tempdir().full_path
    for c in ("a", "b"):
      os.makedirs(os.path.join(junk, c))
      with open(os.path.join(junk, c, "x.png"), "wb") as f:
        f.write(b"not a png")
    self._assert_error("only 0 readable image(s)", f"--data_dir={junk}",
                       "--out_dir={out}", "--num_shards=1")

  def test_existing_shards_need_overwrite(self):
    good = images.make_folder(self.create_tempdir().full_path, per_class=2,
                              bad_files=False)
    out = self.create_tempdir().full_path
    args = (f"--data_dir={good}", f"--out_dir={out}", "--num_shards=2")
    self.assertEqual(tools.run_tool(TOOL, *args).returncode, 0)
    proc = tools.run_tool(TOOL, *args)
    self.assertEqual(tools.error_lines(proc)[0][:7], "error: ")
    self.assertIn("--overwrite", tools.error_lines(proc)[0])
    proc = tools.run_tool(TOOL, *args[:2], "--num_shards=1", "--overwrite")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertCountEqual(os.listdir(out),
                          ["train-00000-of-00001", "train.json"])


class VerifyTest(absltest.TestCase):
  """--verify after a copy: every bad shard named, one error line, exit 1."""

  def test_names_each_missing_truncated_or_damaged_shard(self):
    root = images.make_folder(self.create_tempdir().full_path, per_class=4,
                              bad_files=False)
    out = self.create_tempdir().full_path
    shard_writer.write_shards(root, out, num_shards=4, progress=False)
    proc = tools.run_tool(TOOL, "--verify", f"--out_dir={out}")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("verified 4 shard(s) of train: 12 records", proc.stdout)

    shards = [os.path.join(out, f"train-0000{i}-of-00004") for i in range(4)]
    with open(shards[1], "r+b") as f:  # an interrupted copy
      f.truncate(os.path.getsize(shards[1]) - 100)
    with open(shards[2], "r+b") as f:  # one bad byte in an image
      f.seek(-50, os.SEEK_END)
      byte = f.read(1)
      f.seek(-50, os.SEEK_END)
      f.write(bytes([byte[0] ^ 1]))
    os.remove(shards[3])
    proc = tools.run_tool(TOOL, "--verify", f"--out_dir={out}")
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    errors = tools.error_lines(proc)
    self.assertLen(errors, 1, proc.stderr)
    self.assertIn("3 of 4 shard(s) bad", errors[0])
    lines = dict(l.split(": ", 1) for l in proc.stdout.splitlines())
    self.assertEqual(lines[f"ok   {shards[0]}"], "3 records")
    self.assertStartsWith(lines[f"BAD  {shards[1]}"], "it ends inside record")
    self.assertStartsWith(lines[f"BAD  {shards[2]}"],
                          "record 3 is unreadable (corrupted record at")
    self.assertEqual(lines[f"BAD  {shards[3]}"], "missing")


if __name__ == "__main__":
  absltest.main()
