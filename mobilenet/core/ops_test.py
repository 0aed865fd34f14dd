"""Each raw-op kernel against the Keras layer it stands in for."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl.testing import absltest
from absl.testing import parameterized
import keras
from keras.src.applications import imagenet_utils
import numpy as np
import tensorflow as tf

from mobilenet.core import ops

TOL = 1e-5


def _rand(rng, *shape, low=-1.0, high=1.0):
  return rng.uniform(low, high, shape).astype(np.float32)


class ConvTest(parameterized.TestCase):

  @parameterized.parameters((1, "same", False), (2, "same", True),
                            (2, "valid", False), (1, "valid", True))
  def test_conv2d(self, stride, padding, use_bias):
    rng = np.random.default_rng(1)
    x = _rand(rng, 2, 9, 10, 3)
    layer = keras.layers.Conv2D(5, 3, strides=stride, padding=padding,
                                use_bias=use_bias)
    ref = layer(x).numpy()
    w = layer.get_weights()
    got = ops.conv2d(x, w[0], w[1] if use_bias else None, stride,
                     padding.upper()).numpy()
    np.testing.assert_allclose(got, ref, atol=TOL)

  @parameterized.parameters((1, "same"), (2, "valid"))
  def test_depthwise(self, stride, padding):
    rng = np.random.default_rng(2)
    x = _rand(rng, 2, 9, 8, 6)
    layer = keras.layers.DepthwiseConv2D(3, strides=stride, padding=padding,
                                         use_bias=False)
    ref = layer(x).numpy()
    got = ops.depthwise_conv2d(x, layer.get_weights()[0], None, stride,
                               padding.upper()).numpy()
    np.testing.assert_allclose(got, ref, atol=TOL)


class BatchNormTest(absltest.TestCase):

  def _layer_and_weights(self, rng, c):
    layer = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.999)
    layer.build((None, 4, 4, c))
    w = [_rand(rng, c, low=0.5, high=1.5), _rand(rng, c),
         _rand(rng, c), _rand(rng, c, low=0.2, high=2.0)]
    layer.set_weights(w)
    return layer, w

  def test_inference(self):
    rng = np.random.default_rng(3)
    layer, (g, b, m, v) = self._layer_and_weights(rng, 7)
    x = _rand(rng, 3, 5, 4, 7) * 3
    np.testing.assert_allclose(
        ops.batch_norm_inference(x, g, b, m, v).numpy(),
        layer(x, training=False).numpy(), atol=TOL)

  def test_training_output_and_moving_stats(self):
    rng = np.random.default_rng(4)
    layer, (g, b, m, v) = self._layer_and_weights(rng, 7)
    x = _rand(rng, 3, 5, 4, 7) * 3 + 1
    y, new_m, new_v = ops.batch_norm_training(x, g, b, m, v)
    ref = layer(x, training=True).numpy()
    np.testing.assert_allclose(y.numpy(), ref, atol=TOL)
    np.testing.assert_allclose(new_m.numpy(), layer.moving_mean.numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(new_v.numpy(), layer.moving_variance.numpy(),
                               atol=1e-6)
    # Independent of Keras: biased batch variance and momentum 0.999.
    batch_var = x.reshape(-1, 7).var(axis=0)  # numpy default ddof=0
    np.testing.assert_allclose(new_v.numpy(), v * 0.999 + batch_var * 0.001,
                               rtol=1e-5)


class PadTest(parameterized.TestCase):

  @parameterized.parameters((32, 32), (33, 47), (7, 8), (3, 3))
  def test_matches_keras_zero_padding(self, h, w):
    rng = np.random.default_rng(5)
    x = _rand(rng, 1, h, w, 2)
    kx = keras.Input((h, w, 2))
    pad = imagenet_utils.correct_pad(kx, 3)
    self.assertEqual(ops.correct_pad(h, w, 3), pad)
    ref = keras.layers.ZeroPadding2D(pad)(x).numpy()
    np.testing.assert_array_equal(ops.zero_pad_for_stride2(x).numpy(), ref)
    # Unknown static shape: padding computed at run time must agree.
    dyn = tf.function(ops.zero_pad_for_stride2, input_signature=[
        tf.TensorSpec([None, None, None, 2], tf.float32)])
    np.testing.assert_array_equal(dyn(x).numpy(), ref)

  @parameterized.parameters(32, 33, 7, 8, 3, 4)
  def test_same_shortcut_is_exact(self, n):
    self.assertTrue(ops.pad_matches_same(n, n + 1, 3, 2))
    rng = np.random.default_rng(6)
    x = _rand(rng, 1, n, n + 1, 4)
    k = _rand(rng, 3, 3, 4, 1)
    valid = ops.depthwise_conv2d(ops.zero_pad_for_stride2(x), k, None, 2,
                                 "VALID")
    same = ops.depthwise_conv2d(x, k, None, 2, "SAME")
    np.testing.assert_allclose(same.numpy(), valid.numpy(), atol=1e-6)


class MiscTest(absltest.TestCase):

  def test_relu6(self):
    x = np.linspace(-3, 9, 25, dtype=np.float32)
    np.testing.assert_array_equal(ops.relu6(x).numpy(),
                                  keras.layers.ReLU(6.0)(x).numpy())

  def test_pooling(self):
    x = _rand(np.random.default_rng(7), 2, 3, 5, 4)
    np.testing.assert_allclose(ops.global_avg_pool(x).numpy(),
                               keras.layers.GlobalAveragePooling2D()(x),
                               atol=1e-6)
    np.testing.assert_array_equal(ops.global_max_pool(x).numpy(),
                                  keras.layers.GlobalMaxPooling2D()(x))

  def test_dense_softmax(self):
    rng = np.random.default_rng(8)
    x = _rand(rng, 3, 6)
    layer = keras.layers.Dense(4, activation="softmax")
    layer.build((None, 6))
    k, b = _rand(rng, 6, 4), _rand(rng, 4)
    layer.set_weights([k, b])
    got = ops.softmax(ops.dense(x, k, b)).numpy()
    np.testing.assert_allclose(got, layer(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)


if __name__ == "__main__":
  absltest.main()
