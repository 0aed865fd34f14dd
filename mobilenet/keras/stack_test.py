"""Proves the Keras stack inside the Bazel sandbox: a Keras layer equals tf.nn."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest


class StackTest(absltest.TestCase):

  def test_depthwise_layer_matches_raw_op(self):
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 4)).astype(np.float32)
    layer = tf.keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False)
    want = layer(x).numpy()
    got = tf.nn.depthwise_conv2d(x, layer.kernel, [1, 2, 2, 1], "VALID").numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


if __name__ == "__main__":
  absltest.main()
