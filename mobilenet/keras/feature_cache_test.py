"""feature_cache: the head phase on features computed once gives the head
the frozen backbone gives, batch for batch.

The data has two unreadable files, so the cache must drop the same images
the image stream drops; the run starts from the bundled digit model (a
pretrained backbone, --head_epochs=1) as a fine-tuning user's would.
"""

import os
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from mobilenet.core import model_source
from mobilenet.core import preprocess
from mobilenet.keras import feature_cache
from mobilenet.keras import model as model_lib
from mobilenet.keras import train_lib
from mobilenet.testing import images

# Float rounding only: the cache computes each image's features in a batch
# of other images (file order) than the shuffled training batch, and
# oneDNN's kernels may round per batch shape.  Measured max |difference| of
# the head after one epoch: see the test's printout.
HEAD_RTOL, HEAD_ATOL = 1e-5, 1e-6
FINAL_ATOL = 1e-4


def _config(data, ckpt, **kw):
  args = dict(data_dir=data, alpha=0.35, input_size=48, channels=1,
              epochs=2, head_epochs=1, init_weights="bundled", batch_size=8,
              learning_rate=1e-2, val_split=0.25, augment="none",
              checkpoint_dir=ckpt, bn_reestimate_batches=2, verbose=0,
              tensorboard=False)
  args.update(kw)
  return train_lib.Config(**args)


class FeatureCacheTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = images.make_folder(
        tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()),
        per_class=12)

  def test_cached_batches_are_the_image_streams_through_the_backbone(self):
    trainer = train_lib.Trainer(
        _config(self.data, self.create_tempdir().full_path),
        log=lambda _: None)
    cache = feature_cache.for_epoch(trainer)
    self.assertIsNotNone(cache)
    head = trainer.model.get_layer("predictions")
    import keras  # pylint: disable=g-import-not-at-top
    backbone = keras.Model(trainer.model.inputs, head.input)
    for seed, skip in ((7, 0), (8, 2)):
      want = list(trainer.train_data.dataset(8, shuffle_seed=seed,
                                             skip_batches=skip))
      got = list(cache.dataset(8, shuffle_seed=seed, skip_batches=skip))
      self.assertLen(got, len(want))
      self.assertGreater(len(got), 1)
      for (features, labels), (pixels, image_labels) in zip(got, want):
        np.testing.assert_array_equal(labels.numpy(), image_labels.numpy())
        np.testing.assert_allclose(
            features.numpy(), backbone(pixels, training=False).numpy(),
            rtol=1e-5, atol=1e-5)
    # Every training file Pillow decodes, and only those.
    split = trainer.train_data.split
    readable = []
    for path in split.paths:
      try:
        preprocess.load_image(path)
        readable.append(True)
      except preprocess.ImageError:
        readable.append(False)
    self.assertEqual(cache.readable.tolist(), readable)
    self.assertIn(False, readable)  # an unreadable file in the training split

  def test_big_caches_go_to_a_file_with_the_same_batches(self):
    ckpt = self.create_tempdir().full_path
    trainer = train_lib.Trainer(_config(self.data, ckpt), log=lambda _: None)
    memory = feature_cache.FeatureCache(trainer)
    self.assertIsNone(memory.path)
    with mock.patch.object(feature_cache, "MEMORY_LIMIT", 0):
      disk = feature_cache.FeatureCache(trainer)
    self.assertEqual(disk.path, os.path.join(ckpt, feature_cache.FILE))
    self.assertIsInstance(disk.features, np.memmap)
    for (a, la), (b, lb) in zip(disk.dataset(8, 5, 1),
                                memory.dataset(8, 5, 1)):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
      np.testing.assert_array_equal(la.numpy(), lb.numpy())
    disk.close()
    self.assertFalse(os.path.exists(disk.path))

  def test_head_trained_on_the_cache_equals_head_through_the_backbone(self):
    runs = {}
    for cached in (True, False):
      ckpt = self.create_tempdir().full_path
      cfg = _config(self.data, ckpt, feature_cache=cached)
      lines = []
      trainer = train_lib.Trainer(cfg, log=lines.append, stop_after_epoch=1)
      first = trainer.run()
      self.assertFalse(first.finished)
      self.assertEqual(any("feature cache:" in l for l in lines), cached)
      head_phase = model_lib.get_params(trainer.model)
      self.assertIsNone(trainer.feature_cache)  # closed with the run
      # The rest of the run (fine-tuning, no cache) from the checkpoint.
      lines = []
      final = train_lib.train(cfg, log=lines.append)
      self.assertTrue(final.finished)
      self.assertFalse(any("feature cache:" in l for l in lines))
      runs[cached] = head_phase, first, final

    (head_a, first_a, final_a), (head_b, first_b, final_b) = (runs[True],
                                                              runs[False])
    self.assertEqual(first_a.step, first_b.step)
    self.assertEqual(final_a.step, final_b.step)
    worst = 0.0
    for layer in head_b:
      for key, want in head_b[layer].items():
        if layer == "predictions":
          np.testing.assert_allclose(head_a[layer][key], want,
                                     rtol=HEAD_RTOL, atol=HEAD_ATOL,
                                     err_msg=f"{layer}/{key}")
          worst = max(worst, float(np.abs(head_a[layer][key] - want).max()))
        else:  # frozen: bit-identical either way
          np.testing.assert_array_equal(head_a[layer][key], want,
                                        err_msg=f"{layer}/{key}")
    print(f"head, cached vs through the backbone: max |difference| "
          f"{worst:.3g}")
    # The head learned (a fresh 3-class head, not the bundled one).
    fresh = model_lib.get_params(train_lib.Trainer(
        _config(self.data, self.create_tempdir().full_path),
        log=lambda _: None).model)["predictions"]["kernel"]
    self.assertGreater(np.abs(head_b["predictions"]["kernel"] - fresh).max(),
                       1e-3)
    # Same batches, so the same epoch figures.
    for a, b in zip(final_a.history, final_b.history):
      self.assertEqual(a["step"], b["step"])
      self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-5 * b["loss"])
      self.assertEqual(a["accuracy"], b["accuracy"])
    # Fine-tuning from the two heads: rounding-level differences grow a
    # little over an epoch of full training.
    export_a = model_source.resolve(final_a.export_path).params
    export_b = model_source.resolve(final_b.export_path).params
    worst = max(float(np.abs(export_a[l][k] - v).max())
                for l in export_b for k, v in export_b[l].items())
    print(f"exports after fine-tuning: max |difference| {worst:.3g}")
    self.assertLess(worst, FINAL_ATOL)


if __name__ == "__main__":
  absltest.main()
