"""mobilenet.keras.MobileNetV2 against keras.applications.MobileNetV2."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import h5py
import keras
from keras.src.legacy.saving import legacy_h5_format
import numpy as np

from mobilenet.core import arch
from mobilenet.core import checkpoint
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.keras import MobileNetV2
from mobilenet.keras import model as model_lib


def _reference(alpha, size, include_top, pooling=None, classes=1000,
               channels=3, seed=0):
  """keras.applications model with random weights and random BN stats."""
  ref = keras.applications.MobileNetV2(
      input_shape=(size, size, channels), alpha=alpha,
      include_top=include_top, weights=None, pooling=pooling,
      classes=classes)
  rng = np.random.default_rng(seed)
  values = []
  for w in ref.weights:
    v = rng.normal(0, 0.1, w.shape).astype(np.float32)
    if "moving_variance" in w.path:
      v = rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
    elif "gamma" in w.path:
      v += 1.0
    values.append(v)
  ref.set_weights(values)
  return ref


class ParityTest(parameterized.TestCase):

  @parameterized.parameters(
      (0.35, 32, True, None),
      (0.35, 48, False, "avg"),
      (1.0, 33, True, None),   # odd size: correct_pad differs from SAME
      (1.0, 40, False, None),
      (1.0, 224, True, None),
  )
  def test_matches_keras_applications(self, alpha, size, top, pooling):
    ref = _reference(alpha, size, top, pooling)
    ours = MobileNetV2(input_shape=(size, size, 3), alpha=alpha,
                       include_top=top, weights=None, pooling=pooling)
    ref_weights = ref.get_weights()
    self.assertEqual([w.shape for w in ours.get_weights()],
                     [w.shape for w in ref_weights])
    ours.set_weights(ref_weights)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(
        np.float32)
    want = ref(x, training=False).numpy()
    got = ours(x, training=False).numpy()
    self.assertEqual(got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    self.assertEqual(ours.name, ref.name)

  def test_layer_names_and_weight_paths_match(self):
    ref = _reference(0.35, 32, True)
    ours = MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None)
    self.assertEqual([w.path for w in ours.weights],
                     [w.path for w in ref.weights])
    self.assertEqual(ours.get_layer("block_5_project_BN").moving_mean.shape,
                     ref.get_layer("block_5_project_BN").moving_mean.shape)
    self.assertEqual(ours.count_params(), ref.count_params())
    self.assertLen(ours.trainable_weights, len(ref.trainable_weights))

  def test_training_mode_output_and_bn_update(self):
    ref = _reference(0.35, 32, True, classes=5)
    ours = MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                       classes=5)
    ours.set_weights(ref.get_weights())
    x = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)).astype(
        np.float32)
    np.testing.assert_allclose(ours(x, training=True).numpy(),
                               ref(x, training=True).numpy(), atol=1e-4)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
      np.testing.assert_allclose(a, b, atol=1e-5)

  def test_gray_input_and_input_tensor(self):
    ref = _reference(0.35, 32, True, classes=10, channels=1)
    inp = keras.Input((32, 32, 1))
    ours = MobileNetV2(input_tensor=inp, alpha=0.35, weights=None,
                       classes=10, classifier_activation=None)
    ours.set_weights(ref.get_weights())
    x = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 1)).astype(
        np.float32)
    logits = ours(x).numpy()
    np.testing.assert_allclose(
        np.exp(logits) / np.exp(logits).sum(-1, keepdims=True),
        ref(x).numpy(), atol=1e-5)


class WeightsArgTest(absltest.TestCase):

  def test_official_keras_file(self):
    ref = _reference(0.35, 32, False)
    path = os.path.join(self.create_tempdir().full_path, "w.h5")
    with h5py.File(path, "w") as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    ours = MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                       include_top=False, weights=path)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
      np.testing.assert_array_equal(a, b)

  def test_our_checkpoint_sets_shape_and_wrong_alpha_refused(self):
    d = self.create_tempdir().full_path
    net = arch.derive(0.35, 1, 4)
    params = params_lib.init(net, seed=9)
    h5 = os.path.join(d, "m.h5")
    params_lib.save_h5(params, h5, net)
    checkpoint.write_sidecar(os.path.join(d, "m.json"), h5, alpha=0.35,
                               input_size=40, channels=1,
                               labels=["a", "b", "c", "d"])
    ours = MobileNetV2(alpha=0.35, weights=h5, classes=4)
    self.assertEqual(tuple(ours.input_shape), (None, 40, 40, 1))
    got = model_lib.get_params(ours)
    for layer in params:
      for k in params[layer]:
        np.testing.assert_array_equal(got[layer][k], params[layer][k])
    with self.assertRaisesRegex(ValueError, "alpha"):
      MobileNetV2(alpha=1.0, weights=h5, classes=4)
    with self.assertRaisesRegex(ValueError, "classes=4"):
      MobileNetV2(alpha=0.35, weights=h5)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, ">= 32"):
      MobileNetV2(input_shape=(16, 16, 3), weights=None)
    with self.assertRaisesRegex(ValueError, "alpha"):
      MobileNetV2(alpha=0, weights=None)
    with self.assertRaisesRegex(ValueError, "pooling"):
      MobileNetV2(pooling="sum", weights=None, include_top=False)


class FitTest(absltest.TestCase):

  def test_fit_steps_equal_keras_applications_fit_steps(self):
    """fit() trains our layers exactly as it trains Keras' own: the same
    fit() steps (SGD with momentum, unshuffled batches) from the same
    weights give keras.applications.MobileNetV2's weights, BN moving
    statistics and losses, bit for bit.

    Bit-identity is what to expect here, not luck: on one device both
    models run the same TF ops in the same order (conv2d, depthwise_conv2d,
    the tf.nn.moments + batch_normalization chain -- these activations are
    far below ops' fused-BN size threshold --, relu6, matmul, softmax), and
    those kernels are deterministic.  Measured: identical with oneDNN on and
    off.  Any difference in the op chain (other BN statistics, epsilon,
    momentum, padding, loss) breaks it.
    """
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 32)
    x = rng.normal(0, 0.3, (32, 32, 32, 1)).astype(np.float32)
    x[y == 1, :16] += 1.0  # class 1: bright top half
    keras.utils.set_random_seed(0)
    ours = MobileNetV2(input_shape=(32, 32, 1), alpha=0.35, weights=None,
                       classes=2, bn_momentum=0.9)
    ref = keras.applications.MobileNetV2(
        input_shape=(32, 32, 1), alpha=0.35, weights=None, classes=2)
    for layer in ref.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9  # built with 0.999
    initial = ours.get_weights()
    ref.set_weights(initial)  # same order: test_layer_names_and_weight_paths
    losses = []
    for model in (ours, ref):
      model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                    loss="sparse_categorical_crossentropy", jit_compile=False)
      # 2 epochs x 2 batches: 4 steps, the momentum carried between them.
      hist = model.fit(x, y, batch_size=16, epochs=2, shuffle=False,
                       verbose=0)
      losses.append(hist.history["loss"])
    self.assertEqual(losses[0], losses[1])
    moved = {"moving": 0.0, "trained": 0.0}
    for w, a, b, b0 in zip(ref.weights, ours.get_weights(), ref.get_weights(),
                           initial):
      np.testing.assert_array_equal(a, b, err_msg=w.path)
      kind = "moving" if "moving_" in w.path else "trained"
      moved[kind] = max(moved[kind], float(np.abs(b - b0).max()))
    # Both really trained: weights and statistics moved.
    self.assertGreater(moved["trained"], 1e-3)
    self.assertGreater(moved["moving"], 1e-2)


if __name__ == "__main__":
  absltest.main()
