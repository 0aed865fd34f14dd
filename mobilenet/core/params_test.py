"""Params init, Keras import and legacy-HDF5 import/export, checked against
Keras itself (its initializers, its legacy saver and its loader)."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import h5py
import keras
from keras.src.legacy.saving import legacy_h5_format
import numpy as np

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import params


def _randomize_bn(model, seed):
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                         rng.normal(0, 0.2, n), rng.uniform(0.3, 2.0, n)])


def _random_params(net, seed):
  """Our own init plus random BN statistics (so nothing is trivially 0/1)."""
  p = params.init(net, seed)
  rng = np.random.default_rng(seed + 100)
  for name in net.bn_names:
    n = p[name]["gamma"].shape[0]
    p[name] = {"gamma": rng.uniform(0.5, 1.5, n).astype(np.float32),
               "beta": rng.normal(0, 0.2, n).astype(np.float32),
               "moving_mean": rng.normal(0, 0.2, n).astype(np.float32),
               "moving_variance": rng.uniform(0.3, 2, n).astype(np.float32)}
  if net.classifier:
    p["predictions"]["bias"] = rng.normal(0, 0.1, net.classifier.out_channels
                                          ).astype(np.float32)
  return p


def _assert_params_equal(test, a, b):
  test.assertEqual(sorted(a), sorted(b))
  for layer in a:
    test.assertEqual(sorted(a[layer]), sorted(b[layer]), layer)
    for k in a[layer]:
      np.testing.assert_array_equal(np.asarray(a[layer][k]),
                                    np.asarray(b[layer][k]), f"{layer}/{k}")


class InitTest(absltest.TestCase):

  def test_shapes_and_bn_defaults(self):
    net = arch.derive(0.5, classes=10)
    p = params.init(net, seed=1)
    params.check(p, net)
    np.testing.assert_array_equal(p["bn_Conv1"]["gamma"], 1.0)
    np.testing.assert_array_equal(p["bn_Conv1"]["moving_variance"], 1.0)
    np.testing.assert_array_equal(p["Conv_1_bn"]["moving_mean"], 0.0)
    np.testing.assert_array_equal(p["predictions"]["bias"], 0.0)
    q = params.init(net, seed=1)
    np.testing.assert_array_equal(p["Conv1"]["kernel"], q["Conv1"]["kernel"])
    r = params.init(net, seed=2)
    self.assertFalse(np.array_equal(p["Conv1"]["kernel"], r["Conv1"]["kernel"]))

  def test_kernel_distribution_matches_keras_glorot_uniform(self):
    net = arch.derive(1.0)
    p = params.init(net, seed=3)
    glorot = keras.initializers.GlorotUniform(seed=0)
    for layer, key in (("block_5_expand", "kernel"),
                       ("block_5_depthwise", "depthwise_kernel"),
                       ("Conv_1", "kernel"), ("predictions", "kernel")):
      ours = p[layer][key]
      ref = np.asarray(glorot(ours.shape))
      # Same uniform range: max |w| and std within a few percent.
      self.assertAlmostEqual(np.abs(ours).max() / np.abs(ref).max(), 1.0,
                             delta=0.03, msg=layer)
      self.assertAlmostEqual(ours.std() / ref.std(), 1.0, delta=0.1,
                             msg=layer)


class KerasImportTest(parameterized.TestCase):

  @parameterized.parameters((0.35, True), (1.3, False))
  def test_from_keras_model(self, alpha, include_top):
    model = keras.applications.MobileNetV2(
        weights=None, alpha=alpha, input_shape=(32, 32, 3),
        include_top=include_top, classes=5)
    _randomize_bn(model, 0)
    net = arch.derive(alpha, classes=5, include_top=include_top)
    p = params.from_keras_model(model, net)
    for layer in model.layers:
      if layer.weights:
        names = sorted(p[layer.name])
        keras_names = sorted(
            "depthwise_kernel" if isinstance(
                layer, keras.layers.DepthwiseConv2D) else w.path.split("/")[-1]
            for w in layer.weights)
        self.assertEqual(names, keras_names)
        for w in layer.weights:
          key = w.path.split("/")[-1]
          if isinstance(layer, keras.layers.DepthwiseConv2D):
            key = "depthwise_kernel"
          np.testing.assert_array_equal(p[layer.name][key], w.numpy())

  def test_from_keras_model_wrong_alpha(self):
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.5, input_shape=(32, 32, 3), include_top=False)
    with self.assertRaisesRegex(ValueError, r"layer '\w+'.*\(.*\).*\(.*\)"):
      params.from_keras_model(model, arch.derive(0.75, include_top=False))


class H5Test(parameterized.TestCase):

  def test_keras_legacy_file_imports(self):
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(32, 32, 3), classes=3)
    _randomize_bn(model, 1)
    path = os.path.join(self.create_tempdir().full_path, "k.h5")
    with h5py.File(path, "w") as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, model)
    net = arch.derive(0.35, classes=3)
    _assert_params_equal(self, params.load_h5(path, net),
                         params.from_keras_model(model, net))

  def test_round_trip_exact_and_official_layout(self):
    net = arch.derive(0.5, classes=4)
    p = _random_params(net, 2)
    path = os.path.join(self.create_tempdir().full_path, "w.h5")
    params.save_h5(p, path, net)
    _assert_params_equal(self, params.load_h5(path, net), p)
    with h5py.File(path, "r") as f:
      names = [n.decode() for n in f.attrs["layer_names"]]
      self.assertEqual(names, list(net.weight_shapes()))
      self.assertEqual([n.decode() for n in f["bn_Conv1"].attrs["weight_names"]],
                       ["bn_Conv1/gamma:0", "bn_Conv1/beta:0",
                        "bn_Conv1/moving_mean:0", "bn_Conv1/moving_variance:0"])
      self.assertEqual(
          f["block_3_depthwise"]["block_3_depthwise"]["depthwise_kernel:0"]
          .shape, net.weight_shapes()["block_3_depthwise"]["depthwise_kernel"])
    self.assertEqual(os.listdir(os.path.dirname(path)), ["w.h5"])

  @parameterized.parameters((True, None), (False, "avg"))
  def test_export_loads_into_keras(self, include_top, pooling):
    alpha, size = 0.75, 40
    net = arch.derive(alpha, classes=6, include_top=include_top)
    p = _random_params(net, 3)
    path = os.path.join(self.create_tempdir().full_path, "export.h5")
    params.save_h5(p, path, net)
    model = keras.applications.MobileNetV2(
        weights=None, alpha=alpha, input_shape=(size, size, 3), classes=6,
        include_top=include_top, pooling=pooling, classifier_activation=None)
    model.load_weights(path)
    _assert_params_equal(self, params.from_keras_model(model, net), p)
    x = np.random.default_rng(4).uniform(-1, 1, (2, size, size, 3)).astype(
        np.float32)
    ours = forward.forward(p, x, alpha=alpha, include_top=include_top,
                           pooling=pooling, classifier_activation=None)
    np.testing.assert_allclose(ours.numpy(), model(x).numpy(), atol=1e-4)

  def test_wrong_alpha_names_layer_and_shapes(self):
    path = os.path.join(self.create_tempdir().full_path, "a050.h5")
    params.save_h5(params.init(arch.derive(0.5)), path, arch.derive(0.5))
    with self.assertRaisesRegex(
        ValueError, r"layer 'Conv1' weight 'kernel' has shape "
        r"\(3, 3, 3, 16\).*alpha=0.75 expects \(3, 3, 3, 24\)"):
      params.load_h5(path, arch.derive(0.75))

  def test_missing_layer(self):
    net = arch.derive(0.35, include_top=False)
    path = os.path.join(self.create_tempdir().full_path, "m.h5")
    params.save_h5(params.init(net), path, net)
    with self.assertRaisesRegex(ValueError, "layer 'predictions' is missing"):
      params.load_h5(path, arch.derive(0.35))
    with h5py.File(path, "a") as f:
      del f["block_7_project_BN"]
    with self.assertRaisesRegex(ValueError,
                                r"layer 'block_7_project_BN' is missing.*"
                                r"'gamma': \(24,\)"):
      params.load_h5(path, net)

  def test_unreadable_file(self):
    path = os.path.join(self.create_tempdir().full_path, "bad.h5")
    with open(path, "w") as f:
      f.write("not hdf5")
    with self.assertRaisesRegex(ValueError, "cannot read weight file"):
      params.load_h5(path, arch.derive(1.0))


class BnStatsTest(absltest.TestCase):

  def test_with_bn_stats_replaces_only_stats(self):
    net = arch.derive(0.35, include_top=False)
    p = params.init(net)
    stats = {n: {"moving_mean": np.full_like(v["moving_mean"], 2.0),
                 "moving_variance": np.full_like(v["moving_variance"], 3.0)}
             for n, v in params.bn_stats(p, net).items()}
    q = params.with_bn_stats(p, stats)
    np.testing.assert_array_equal(q["Conv_1_bn"]["moving_mean"], 2.0)
    np.testing.assert_array_equal(q["Conv_1_bn"]["gamma"], 1.0)
    np.testing.assert_array_equal(p["Conv_1_bn"]["moving_mean"], 0.0)


if __name__ == "__main__":
  absltest.main()
