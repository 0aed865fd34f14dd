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

    # Validation (no shuffle seed) and BN re-estimation: never augmented.
    for a, b in zip(arrays(plain.dataset(8)), arrays(aug.dataset(8))):
      np.testing.assert_array_equal(a, b)
    for a, b in zip(arrays(plain.dataset(8, shuffle_seed=5)),
                    arrays(aug.dataset(8, shuffle_seed=5, augment=False))):
      np.testing.assert_array_equal(a, b)
    whole = arrays(aug.dataset(8, shuffle_seed=5))
    self.assertFalse(np.array_equal(
        whole[0], arrays(plain.dataset(8, shuffle_seed=5))[0]))
    # A resumed epoch sees the very images the interrupted one would have.
    for a, b in zip(whole[1:], arrays(aug.dataset(8, shuffle_seed=5,
                                                  skip_batches=1))):
      np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
  absltest.main()
