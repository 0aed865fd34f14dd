"""weights="imagenet" through Keras' cache, without network access."""

import os
from unittest import mock
import urllib.error

from absl.testing import absltest
from absl.testing import parameterized
import h5py
import keras
from keras.src.applications import mobilenet_v2 as keras_mnv2
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils
import numpy as np

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import params
from mobilenet.core import weights


def _no_network(*args, **kwargs):
  raise urllib.error.URLError("network disabled in test")


class FileNameTest(parameterized.TestCase):

  @parameterized.parameters((0.35, 96, True), (0.5, 224, False),
                            (1.0, 224, True), (1.4, 160, False))
  def test_name_and_url_as_keras(self, alpha, rows, include_top):
    # What keras.applications would request, recovered from its get_file call.
    with mock.patch.object(file_utils, "get_file",
                           side_effect=RuntimeError("stop")) as get_file:
      with self.assertRaises(RuntimeError):
        keras.applications.MobileNetV2(
            weights="imagenet", alpha=alpha, include_top=include_top,
            input_shape=(rows, rows, 3))
    keras_name, keras_url = get_file.call_args.args[:2]
    self.assertEqual(weights.file_name(alpha, rows, include_top), keras_name)
    self.assertEqual(weights.base_url() + keras_name, keras_url)
    self.assertEqual(get_file.call_args.kwargs["cache_subdir"],
                     weights.CACHE_SUBDIR)

  def test_base_url_read_from_keras(self):
    self.assertEqual(weights.base_url(), keras_mnv2.BASE_WEIGHT_PATH)

  @parameterized.parameters((0.6, 224), (1.0, 100))
  def test_unsupported(self, alpha, rows):
    with self.assertRaises(ValueError):
      weights.file_name(alpha, rows)


class FetchTest(absltest.TestCase):

  def test_offline_error_names_file_and_cache_dir(self):
    cache = self.create_tempdir().full_path
    with mock.patch.object(file_utils, "urlretrieve", _no_network):
      with self.assertRaises(weights.WeightsUnavailableError) as ctx:
        weights.fetch(0.35, 96, include_top=False, cache_dir=cache)
    message = str(ctx.exception)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    self.assertIn(name, message)
    self.assertIn(os.path.join(cache, "models"), message)
    self.assertFalse(os.path.exists(os.path.join(cache, "models", name)))

  def test_build_imagenet_offline_raises(self):
    cache = self.create_tempdir().full_path
    with mock.patch.object(file_utils, "urlretrieve", _no_network):
      with self.assertRaisesRegex(weights.WeightsUnavailableError,
                                  "0.35_96_no_top.h5"):
        forward.build(alpha=0.35, input_shape=(96, 96, 3), include_top=False,
                      weights="imagenet", cache_dir=cache)

  def test_cache_hit_loads_keras_legacy_file(self):
    cache = self.create_tempdir().full_path
    os.makedirs(os.path.join(cache, "models"))
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(96, 96, 3), include_top=False)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                       + (1.0 if "variance" in w.path else 0.0)
                       for w in model.weights])
    path = os.path.join(cache, "models", weights.file_name(0.35, 96, False))
    with h5py.File(path, "w") as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, model)
    with mock.patch.object(file_utils, "urlretrieve", _no_network):
      p = weights.load_imagenet(0.35, 96, include_top=False, cache_dir=cache)
    net = arch.derive(0.35, include_top=False)
    expected = params.from_keras_model(model, net)
    for layer in expected:
      for k in expected[layer]:
        np.testing.assert_array_equal(p[layer][k], expected[layer][k])


if __name__ == "__main__":
  absltest.main()
