"""Each raw-op kernel against the Keras layer it stands in for."""

from absl.testing import absltest
from absl.testing import parameterized
import keras
from keras.src.applications import imagenet_utils
import numpy as np
import tensorflow as tf

# Two logical CPUs for the synchronized batch norm; must happen before
# TensorFlow initializes its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

from mobilenet.core import ops  # pylint: disable=g-import-not-at-top

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


class SyncBatchNormTest(parameterized.TestCase):
  """Under MirroredStrategy on 2 logical CPUs, batch_norm_training uses the
  global batch: output, moving statistics and gradients equal one device
  running the concatenated batch."""

  # One strategy for the whole process: two MirroredStrategy objects number
  # their collective ops alike and would collide.
  strategy = None

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if SyncBatchNormTest.strategy is None:
      SyncBatchNormTest.strategy = tf.distribute.MirroredStrategy(
          ["/cpu:0", "/cpu:1"])

  def _data(self, n, c=6, offset=0.0, seed=10):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 5, 3, c)) * rng.uniform(0.3, 3.0, c) +
         rng.uniform(-2, 2, c) + offset).astype(np.float32)
    w = rng.normal(size=x.shape).astype(np.float32)  # loss = sum(y * w)
    bn = (_rand(rng, c, low=0.5, high=1.5), _rand(rng, c),
          _rand(rng, c), _rand(rng, c, low=0.2, high=2.0))
    return x, w, bn

  def _single(self, x, w, bn):
    x, g, b = tf.constant(x), tf.constant(bn[0]), tf.constant(bn[1])
    with tf.GradientTape() as tape:
      tape.watch([x, g, b])
      y, m, v = ops.batch_norm_training(x, g, b, bn[2], bn[3], 0.9)
      loss = tf.reduce_sum(y * w)
    return [t.numpy() for t in [y, m, v] + tape.gradient(loss, [x, g, b])]

  def _mirrored(self, x, w, bn, split):
    strategy = self.strategy
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    bounds = [(0, split), (split, len(x))]

    @tf.function
    def step():
      def replica():
        ctx = tf.distribute.get_replica_context()
        self.assertIs(ops.sync_replica_context(), ctx)
        i = ctx.replica_id_in_sync_group
        lo = tf.constant([b[0] for b in bounds])[i]
        hi = tf.constant([b[1] for b in bounds])[i]
        xs, ws = tf.constant(x)[lo:hi], tf.constant(w)[lo:hi]
        g, b = tf.constant(bn[0]), tf.constant(bn[1])
        with tf.GradientTape() as tape:
          tape.watch([xs, g, b])
          y, m, v = ops.batch_norm_training(xs, g, b, bn[2], bn[3], 0.9)
          loss = tf.reduce_sum(y * ws)
        return [y, m, v] + tape.gradient(loss, [xs, g, b])
      return strategy.run(replica)

    local = [[t.numpy() for t in strategy.experimental_local_results(out)]
             for out in step()]
    y, m, v, dx, dg, db = local
    for a, b in (m, v):  # every replica got the same statistics
      np.testing.assert_array_equal(a, b)
    # Outputs and input gradients per replica piece; parameter gradients
    # summed over replicas (as the optimizer's all-reduce does).
    return [np.concatenate(y), m[0], v[0], np.concatenate(dx), sum(dg),
            sum(db)]

  @parameterized.parameters((3, 7, 0.0), (2, 6, 0.0), (0, 5, 0.0),
                            (4, 8, 1000.0))
  def test_equals_one_device_on_the_whole_batch(self, split, n, offset):
    # (2, 6): uneven pieces; (0, 5): one replica gets no images (a last
    # batch smaller than the replica count); offset 1000: the two-pass
    # variance keeps its digits where E[x^2] - E[x]^2 in float32 would
    # lose all of them (x^2 ~ 1e6, variance ~ 1).
    x, w, bn = self._data(n, offset=offset)
    got = self._mirrored(x, w, bn, split)
    want = self._single(x, w, bn)
    scale = 1.0 + offset
    names = ("y", "moving_mean", "moving_variance", "dx", "dgamma", "dbeta")
    # Measured max |diff| at offset 0: 4.8e-7 (y, dx ~2), 6e-8 / 1.8e-7
    # (moving mean / variance), 4.7e-6 (dgamma, dbeta: sums of ~100 terms
    # ~2).  At offset 1000 the inputs themselves carry 6e-5 (an ulp of
    # 1000), so the means of two summation orders differ by ulps of 1000
    # and everything downstream by as much over sigma: 6e-4 on y.
    tols = tuple(t * scale for t in (2e-6, 1e-6, 1e-6, 2e-6, 2e-5, 2e-5))
    for name, a, b, tol in zip(names, got, want, tols):
      np.testing.assert_allclose(a, b, atol=tol, rtol=1e-5, err_msg=name)
    # Independently of both: Keras' definition in float64.
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    np.testing.assert_allclose(got[2], 0.9 * bn[3] + 0.1 * flat.var(0),
                               rtol=1e-5)
    np.testing.assert_allclose(got[1], 0.9 * bn[2] + 0.1 * flat.mean(0),
                               rtol=1e-6, atol=1e-6 * scale)

  def test_single_device_path_unchanged(self):
    x, _, bn = self._data(4)
    self.assertIsNone(ops.sync_replica_context())
    with tf.distribute.get_strategy().scope():  # the default strategy
      self.assertIsNone(ops.sync_replica_context())
    with self.strategy.scope():  # cross-replica context: no all-reduce
      self.assertIsNone(ops.sync_replica_context())
    a = ops.batch_norm_training(x, *bn, momentum=0.9)
    b = ops.batch_norm_training(x, *bn, momentum=0.9, synchronized=False)
    for u, v in zip(a, b):
      np.testing.assert_array_equal(u.numpy(), v.numpy())


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
