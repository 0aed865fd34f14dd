"""Tests for preprocess: every input mode, broken files, EXIF, Keras parity."""

import os
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image

from mobilenet.core import labels
from mobilenet.core import preprocess

H, W = 12, 20  # non-square so a lost rotation changes the shape


def gradient():
  """Asymmetric uint8 test picture: every pixel distinct-ish, no symmetry."""
  y, x = np.mgrid[0:H, 0:W]
  return ((x * 11 + y * 7 + (x * y) % 13) % 256).astype(np.uint8)


def rgb_picture():
  g = gradient()
  g = g.astype(np.int64)
  return np.dstack([g, 255 - g, (g * 3) % 256]).astype(np.uint8)


def _composite_on_white(values, alpha):
  a = alpha.astype(np.float64) / 255.0
  return values.astype(np.float64) * a + 255.0 * (1.0 - a)


class ModesTest(parameterized.TestCase):
  """Each Pillow mode decodes to the right shape and pixel values.

  Expected values come from numpy arithmetic on the source array or from
  Pillow's own conversion of the file, never from the code under test.
  """

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  def _save(self, image, name, **kwargs):
    path = os.path.join(self.dir, name)
    image.save(path, **kwargs)
    return path

  def _check(self, path, expected_mode, expected_gray, atol=1):
    with Image.open(path) as im:
      self.assertEqual(im.mode, expected_mode, "test file has the wrong mode")
    rgb = preprocess.load_image(path)
    gray = preprocess.load_image(path, channels=1)
    self.assertEqual(rgb.shape, (H, W, 3))
    self.assertEqual(gray.shape, (H, W, 1))
    self.assertEqual(rgb.dtype, np.uint8)
    self.assertEqual(gray.dtype, np.uint8)
    for c in range(3):
      np.testing.assert_allclose(rgb[..., c], expected_gray, atol=atol)
    np.testing.assert_allclose(gray[..., 0], expected_gray, atol=atol)

  def test_L(self):
    g = gradient()
    self._check(self._save(Image.fromarray(g, "L"), "l.png"), "L", g, atol=0)

  def test_1(self):
    g = gradient()
    bits = Image.fromarray(g, "L").convert("1", dither=Image.Dither.NONE)
    path = self._save(bits, "bits.png")
    expected = np.where(g >= 128, 255, 0)
    self._check(path, "1", expected, atol=0)

  def test_LA_composites_on_white(self):
    g = gradient()
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    path = self._save(Image.fromarray(np.dstack([g, alpha]), "LA"), "la.png")
    self._check(path, "LA", _composite_on_white(g, alpha))

  def test_RGBA_composites_on_white(self):
    rgb = rgb_picture()
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    path = self._save(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
                      "rgba.png")
    out = preprocess.load_image(path)
    self.assertEqual(out.shape, (H, W, 3))
    expected = _composite_on_white(rgb, alpha[..., None])
    np.testing.assert_allclose(out, expected, atol=1)
    # Fully transparent column is pure white whatever colour sits under it.
    self.assertTrue((out[:, 0] == 255).all())

  def test_P(self):
    rgb = rgb_picture()
    pal = Image.fromarray(rgb, "RGB").quantize(colors=64)
    path = self._save(pal, "p.png")
    with Image.open(path) as im:
      self.assertEqual(im.mode, "P")
      expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(preprocess.load_image(path), expected)

  def test_P_with_transparency(self):
    g = gradient()
    pal = Image.fromarray(g, "L").convert("P")
    pal.info["transparency"] = int(g[0, 0])
    path = self._save(pal, "pt.png", transparency=int(g[0, 0]))
    with Image.open(path) as im:
      self.assertIn("transparency", im.info)
    out = preprocess.load_image(path, channels=1)[..., 0]
    expected = np.where(g == g[0, 0], 255, g)
    np.testing.assert_array_equal(out, expected)

  def test_PA(self):
    g = gradient()
    pal = Image.fromarray(g, "L").convert("P").convert("PA")
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    pal.putalpha(Image.fromarray(alpha, "L"))
    path = self._save(pal, "pa.tif")
    self._check(path, "PA", _composite_on_white(g, alpha))

  def test_CMYK_jpeg(self):
    rgb = rgb_picture()
    path = self._save(Image.fromarray(rgb, "RGB").convert("CMYK"), "c.jpg",
                      quality=100, subsampling=0)
    with Image.open(path) as im:
      self.assertEqual(im.mode, "CMYK")
    out = preprocess.load_image(path).astype(int)
    self.assertEqual(out.shape, (H, W, 3))
    # JPEG is lossy: colours close to the original, not exact.
    self.assertLess(np.abs(out - rgb).mean(), 4)

  def test_CMYK_tiff_exact(self):
    cmyk = Image.fromarray(rgb_picture(), "RGB").convert("CMYK")
    path = self._save(cmyk, "c.tif")
    with Image.open(path) as im:
      self.assertEqual(im.mode, "CMYK")
    np.testing.assert_array_equal(preprocess.load_image(path), rgb_picture())

  def test_I16_png_scaled_to_8_bit(self):
    g = gradient()
    wide = g.astype(np.uint16) * 257
    wide[0, 0] = 65535
    path = self._save(Image.fromarray(wide), "i16.png")
    expected = g.copy()
    expected[0, 0] = 255
    self._check(path, "I;16", expected, atol=0)

  def test_I16_not_clipped(self):
    # A 16-bit file whose values exceed 255 must not saturate to white.
    wide = np.full((H, W), 32768, np.uint16)
    path = self._save(Image.fromarray(wide), "mid.png")
    out = preprocess.load_image(path, channels=1)
    self.assertTrue(np.all(np.abs(out.astype(int) - 128) <= 1))

  def test_I32_tiff(self):
    g = gradient()
    path = self._save(Image.fromarray(g.astype(np.int32) * 257, "I"), "i.tif")
    self._check(path, "I", g, atol=0)

  def test_F_tiff_unit_range(self):
    g = gradient()
    path = self._save(Image.fromarray(g.astype(np.float32) / 255.0, "F"),
                      "f.tif")
    self._check(path, "F", g)

  def test_RGB_to_gray_matches_pillow_luma(self):
    rgb = rgb_picture()
    path = self._save(Image.fromarray(rgb, "RGB"), "rgb.png")
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    np.testing.assert_array_equal(
        preprocess.load_image(path, channels=1)[..., 0], expected)


class ResizeTest(absltest.TestCase):

  def test_matches_keras_load_img_bilinear(self):
    import keras  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(0)
    path = os.path.join(self.create_tempdir().full_path, "noise.png")
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), np.uint8)).save(path)
    for size in ((32, 32), (96, 64), (24, 40)):
      expected = np.asarray(keras.utils.load_img(
          path, target_size=size, interpolation="bilinear"))
      got = preprocess.load_image(path, size=size)
      self.assertEqual(got.shape, size + (3,))
      np.testing.assert_array_equal(got, expected)

  def test_int_size_is_square(self):
    path = os.path.join(self.create_tempdir().full_path, "g.png")
    Image.fromarray(gradient()).save(path)
    self.assertEqual(preprocess.load_image(path, size=48, channels=1).shape,
                     (48, 48, 1))


class ExifTest(parameterized.TestCase):
  """A picture stored per EXIF Orientation decodes back to the original."""

  # How a camera stores `orig` so that applying the tag shows `orig` again
  # (EXIF 2.32, tag 0x0112), written with numpy, independently of Pillow.
  STORED = {
      1: lambda a: a,
      2: np.fliplr,
      3: lambda a: np.rot90(a, 2),
      4: np.flipud,
      5: lambda a: np.swapaxes(a, 0, 1),
      6: lambda a: np.rot90(a, 1),   # shown after turning 90 deg clockwise
      7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
      8: lambda a: np.rot90(a, -1),  # shown after turning 90 deg counter-cw
  }

  def _store(self, orientation, ext, **kwargs):
    stored = np.ascontiguousarray(self.STORED[orientation](rgb_picture()))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = os.path.join(self.create_tempdir().full_path, f"o{orientation}{ext}")
    Image.fromarray(stored, "RGB").save(path, exif=exif, **kwargs)
    return path

  @parameterized.parameters(1, 2, 3, 4, 5, 6, 7, 8)
  def test_png_orientation_exact(self, orientation):
    path = self._store(orientation, ".png")
    np.testing.assert_array_equal(preprocess.load_image(path), rgb_picture())

  def test_jpeg_rotated_comes_out_upright(self):
    path = self._store(6, ".jpg", quality=100, subsampling=0)
    with Image.open(path) as im:
      self.assertEqual((im.height, im.width), (W, H), "stored sideways")
    out = preprocess.load_image(path).astype(int)
    self.assertEqual(out.shape, (H, W, 3))
    upright_err = np.abs(out - rgb_picture()).mean()
    flipped_err = np.abs(out - rgb_picture()[::-1, ::-1]).mean()
    self.assertLess(upright_err, 4)
    self.assertGreater(flipped_err, 20)


class BrokenFileTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  def _assert_error(self, path, *words):
    with self.assertRaises(preprocess.ImageError) as cm:
      preprocess.load_image(path)
    msg = str(cm.exception)
    self.assertIn(path, msg)
    for w in words:
      self.assertIn(w, msg)
    self.assertIsInstance(cm.exception, ValueError)
    self.assertEqual(len(msg.splitlines()), 1)

  def test_missing(self):
    self._assert_error(os.path.join(self.dir, "nope.png"), "no such file")

  def test_directory(self):
    self._assert_error(self.dir, "directory")

  def test_zero_bytes(self):
    path = os.path.join(self.dir, "empty.jpg")
    open(path, "wb").close()
    self._assert_error(path, "empty")

  def test_text_named_png(self):
    path = os.path.join(self.dir, "notes.png")
    with open(path, "w") as f:
      f.write("these are my notes, not a picture\n")
    self._assert_error(path, "not an image")

  def test_truncated_jpeg(self):
    rng = np.random.default_rng(1)
    path = os.path.join(self.dir, "whole.jpg")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(
        path, quality=90)
    with open(path, "rb") as f:
      data = f.read()
    cut = os.path.join(self.dir, "cut.jpg")
    with open(cut, "wb") as f:
      f.write(data[:len(data) // 2])
    # Header still parses: only a full decode notices the missing half.
    with Image.open(cut) as im:
      self.assertEqual(im.size, (64, 64))
    self._assert_error(cut, "truncated")

  def test_truncated_png(self):
    path = os.path.join(self.dir, "whole.png")
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (64, 64), np.uint8)).save(path)
    with open(path, "rb") as f:
      data = f.read()
    cut = os.path.join(self.dir, "cut.png")
    with open(cut, "wb") as f:
      f.write(data[:len(data) * 2 // 3])
    with self.assertRaises(preprocess.ImageError) as cm:
      preprocess.load_image(cut)
    self.assertIn(cut, str(cm.exception))

  def test_decompression_bomb_refused(self):
    path = os.path.join(self.dir, "big.png")
    Image.new("L", (100, 100)).save(path)
    # Pillow errors above 2x the limit and only warns above 1x: both refused.
    for limit in (4000, 9000):
      with mock.patch.object(Image, "MAX_IMAGE_PIXELS", limit):
        self._assert_error(path, "decompression bomb")
    self.assertEqual(preprocess.load_image(path).shape, (100, 100, 3))

  def test_max_pixels_argument(self):
    path = os.path.join(self.dir, "big.png")
    Image.new("L", (100, 100)).save(path)
    with self.assertRaisesRegex(preprocess.ImageError, "decompression bomb"):
      preprocess.load_image(path, max_pixels=9999)
    self.assertEqual(preprocess.load_image(path, max_pixels=10000).shape,
                     (100, 100, 3))


class NormalizeTest(absltest.TestCase):

  def test_tf_mode_equals_keras_preprocess_input(self):
    # Imported here: Keras pulls in TensorFlow, which only these tests need.
    from keras.applications import mobilenet_v2  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (2, 8, 8, 3), np.uint8)
    pixels.flat[:256] = np.arange(256)  # every byte value
    expected = mobilenet_v2.preprocess_input(pixels.astype(np.float32))
    got = preprocess.normalize(pixels, mode="tf")
    self.assertEqual(got.dtype, np.float32)
    np.testing.assert_array_equal(got, np.asarray(expected))
    self.assertEqual(got.min(), -1.0)
    self.assertEqual(got.max(), 1.0)
    floats = rng.uniform(0, 255, (4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        preprocess.preprocess_input(floats),
        np.asarray(mobilenet_v2.preprocess_input(floats.copy())))

  def test_mean_std(self):
    pixels = np.array([[[0, 128, 255]]], np.uint8)
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 5.0)
    got = preprocess.normalize(pixels, mode="mean_std", mean=mean, std=std)
    np.testing.assert_allclose(got[0, 0], [-5.0, 27.0, 45.0])

  def test_raw_keeps_uint8(self):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    got = preprocess.normalize(pixels, mode="raw")
    self.assertEqual(got.dtype, np.uint8)
    np.testing.assert_array_equal(got, pixels)

  def test_bad_arguments(self):
    x = np.zeros((2, 2, 3), np.uint8)
    with self.assertRaises(ValueError):
      preprocess.normalize(x, mode="torch")
    with self.assertRaises(ValueError):
      preprocess.normalize(x, mode="mean_std", mean=1.0)
    with self.assertRaises(ValueError):
      preprocess.normalize(x, mode="tf", mean=1.0, std=1.0)
    with self.assertRaises(ValueError):
      preprocess.normalize(x, mode="mean_std", mean=0.0, std=0.0)


class BatchTest(absltest.TestCase):

  def test_batch_of_mixed_files(self):
    d = self.create_tempdir().full_path
    g = gradient()
    paths = []
    for i, mode in enumerate(("L", "RGB", "RGBA")):
      path = os.path.join(d, f"{i}.png")
      Image.fromarray(g, "L").convert(mode).save(path)
      paths.append(path)
    batch = preprocess.load_images(paths, size=(24, 40), mode="tf")
    self.assertEqual(batch.shape, (3, 24, 40, 3))
    self.assertEqual(batch.dtype, np.float32)
    self.assertTrue(np.all(batch >= -1) and np.all(batch <= 1))
    # Same grey content in three modes: same model input.
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], batch[2])
    raw = preprocess.load_images(paths, size=16, channels=1, mode="raw")
    self.assertEqual((raw.shape, raw.dtype), ((3, 16, 16, 1), np.uint8))
    self.assertEqual(preprocess.find_images(d), sorted(paths))

  def test_batch_reports_every_bad_file(self):
    d = self.create_tempdir().full_path
    good = os.path.join(d, "good.png")
    Image.fromarray(gradient()).save(good)
    empty = os.path.join(d, "empty.png")
    open(empty, "wb").close()
    missing = os.path.join(d, "missing.png")
    with self.assertRaises(preprocess.ImageError) as cm:
      preprocess.load_images([good, empty, missing], size=8)
    msg = str(cm.exception)
    self.assertIn("2 of 3", msg)
    self.assertIn(empty, msg)
    self.assertIn(missing, msg)
    self.assertNotIn(good + ":", msg)


class CheckedInSamplesTest(absltest.TestCase):
  """The odd-format files in data/samples decode to the plain digits."""

  def _load(self, name, **kwargs):
    path = labels.data_path(os.path.join("samples", name))
    return preprocess.load_image(path, channels=1, **kwargs)[..., 0].astype(int)

  def test_odd_formats_match_plain_digits(self):
    for plain, odd, tol in (("digit_0.png", "digit_0_gray16.png", 0),
                            ("digit_2.png", "digit_2_rgba.png", 0),
                            ("digit_3.png", "digit_3_palette.png", 0),
                            ("digit_7.png", "digit_7_cmyk.jpg", 6),
                            ("digit_9.png", "digit_9_exif_rotated.jpg", 6)):
      with Image.open(labels.data_path(os.path.join("samples", plain))) as im:
        reference = np.asarray(im.convert("L")).astype(int)
      got = self._load(odd)
      self.assertEqual(got.shape, (28, 28), odd)
      self.assertLessEqual(np.abs(got - reference).mean(), tol, odd)

  def test_calibration_and_heldout_sets(self):
    calib = preprocess.find_images(labels.data_path("calibration"))
    heldout = preprocess.find_images(labels.data_path("mnist_heldout"))
    self.assertLen(calib, 100)
    self.assertLen(heldout, 1000)
    per_digit = [os.path.basename(os.path.dirname(p)) for p in heldout]
    self.assertEqual(sorted(set(per_digit)), [str(d) for d in range(10)])
    self.assertEqual({per_digit.count(str(d)) for d in range(10)}, {100})
    calib_rows = {os.path.basename(p)[2:6] for p in calib}
    heldout_rows = {os.path.basename(p)[:4] for p in heldout}
    self.assertFalse(calib_rows & heldout_rows, "calibration leaks held-out")
    batch = preprocess.load_images(calib[:10], size=28, channels=1, mode="raw")
    self.assertEqual(batch.shape, (10, 28, 28, 1))
    self.assertGreater(batch.max(), 200)  # real ink, not blank images


if __name__ == "__main__":
  absltest.main()
