"""Augmentation presets and where the pipeline applies them."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from mobilenet.keras import augment
from mobilenet.keras import data
from mobilenet.keras import folders
from mobilenet.testing import images


def _square(size=48, channels=1):
  x = np.zeros((size, size, channels), np.float32)
  x[18:30, 18:30] = 255.0
  return tf.constant(x)


def _centre(x):
  m = np.asarray(x)[..., 0]
  ys, xs = np.nonzero(m > 127)
  return ys.mean(), xs.mean()


class PresetTest(absltest.TestCase):

  def test_digits_small_bounded_moves_same_seed_same_image(self):
    x = _square()
    seed = tf.constant([7, 3], tf.int32)
    a, b = augment.digits(x, seed), augment.digits(x, seed)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    moved = [_centre(augment.digits(x, tf.constant([7, i]))) for i in
             range(20)]
    # Centre 23.5: shift <= 0.1 * 48 = 4.8 px, zoom/rotation about the centre.
    for cy, cx in moved:
      self.assertLess(abs(cy - 23.5), 4.8 + 1.0)
      self.assertLess(abs(cx - 23.5), 4.8 + 1.0)
    self.assertGreater(len({(round(c[0], 1), round(c[1], 1))
                            for c in moved}), 10)
    self.assertEqual(a.shape, x.shape)

  def test_photos_keeps_shape_and_range(self):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (40, 40, 3)).astype(np.float32))
    y = augment.photos(x, tf.constant([1, 2]))
    self.assertEqual(y.shape, x.shape)
    self.assertBetween(float(tf.reduce_min(y)), 0.0, 255.0)
    self.assertBetween(float(tf.reduce_max(y)), 0.0, 255.0)
    np.testing.assert_array_equal(
        y.numpy(), augment.photos(x, tf.constant([1, 2])).numpy())

  def test_photos_crops_flips_and_shifts_brightness_in_range(self):
    """A 1-channel plane stays a plane through every step, so its slopes read
    back the crop (zoom, aspect) and the flip; a constant image reads back
    the brightness shift (crop, flip and contrast leave it constant)."""
    a, b = 0.8, 1.2   # vertical, horizontal slope; 128 +- 47 never clips
    i, j = np.mgrid[0:48, 0:48].astype(np.float64) - 23.5
    plane = tf.constant((128 + a * i + b * j)[..., None], tf.float32)
    inner = (slice(4, -4), slice(4, -4))  # bilinear edges clamp
    design = np.stack([np.ones_like(i[inner]), i[inner], j[inner]], -1)
    flips, zooms, shifts = 0, [], []
    seeds = [tf.constant([11, k]) for k in range(40)]
    for seed in seeds:
      out = augment.photos(plane, seed).numpy()[..., 0].astype(np.float64)
      coef, *_ = np.linalg.lstsq(design.reshape(-1, 3),
                                 out[inner].reshape(-1), rcond=None)
      sy, sx = coef[1] / a, coef[2] / b
      fit = design.reshape(-1, 3) @ coef
      self.assertLess(np.abs(fit - out[inner].reshape(-1)).max(), 0.5)
      flips += sx < 0
      # Crop w x h of 48 x 48 upsampled: slopes scale by w/48 and h/48 (and
      # both by the contrast factor, which the ratio cancels).
      self.assertBetween(abs(sx / sy), augment.CROP_ASPECT[0] - 0.05,
                         augment.CROP_ASPECT[1] + 0.05)
      zooms.append(np.sqrt(abs(sx * sy)))  # contrast * sqrt(area)
      const = augment.photos(tf.fill((48, 48, 1), 128.0), seed).numpy()
      self.assertLess(np.ptp(const), 1e-3)
      shifts.append(float(const.mean()) - 128.0)
    self.assertBetween(flips, 8, 32)  # p = 0.5 each
    lo, hi = 1 - augment.JITTER, 1 + augment.JITTER
    self.assertGreaterEqual(min(zooms), lo * np.sqrt(augment.CROP_AREA[0]) - 0.05)
    self.assertLessEqual(max(zooms), hi + 0.05)
    self.assertLess(min(zooms), 0.7)  # areas down to 25 % do occur
    self.assertLessEqual(max(abs(d) for d in shifts),
                         augment.JITTER * 255 + 1e-3)
    self.assertGreater(max(shifts), 15)
    self.assertLess(min(shifts), -15)


class PipelineTest(absltest.TestCase):

  def test_training_stream_only_and_resumable(self):
    root = images.make_folder(self.create_tempdir().full_path, per_class=8,
                              bad_files=False)
    split, _ = folders.scan_folder(root)
    plain = data.FolderPipeline(split, 32, 3, data.SkipCounter())
    aug = data.FolderPipeline(split, 32, 3, data.SkipCounter(),
                              augment.digits)

    def arrays(ds):
      return [b[0].numpy() for b in ds]

    def assert_same(xs, ys):
      self.assertLen(xs, len(ys))
      for a, b in zip(xs, ys):
        np.testing.assert_array_equal(a, b)

    # 3 classes x 8 images in batches of 8.
    self.assertLen(arrays(plain.dataset(8)), 3)
    # Validation (no shuffle seed) and BN re-estimation: never augmented.
    assert_same(arrays(plain.dataset(8)), arrays(aug.dataset(8)))
    assert_same(arrays(plain.dataset(8, shuffle_seed=5)),
                arrays(aug.dataset(8, shuffle_seed=5, augment=False)))
    whole = arrays(aug.dataset(8, shuffle_seed=5))
    self.assertFalse(np.array_equal(
        whole[0], arrays(plain.dataset(8, shuffle_seed=5))[0]))
    # A resumed epoch sees the very images the interrupted one would have.
    assert_same(whole[1:], arrays(aug.dataset(8, shuffle_seed=5,
                                              skip_batches=1)))


if __name__ == "__main__":
  absltest.main()
