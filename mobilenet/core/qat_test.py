"""Fake quantization in the raw-op forward (core/qat.py, forward's qat
modes) against independent references: numpy rounding to TFLite's int8
grid, conv + BatchNorm unfused, and the Keras QAT model."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import ops
from mobilenet.core import params as params_lib
from mobilenet.core import qat
from mobilenet.testing import models

ALPHA, SIZE = 0.35, 32


def numpy_weight_grid(w, axis):
  """TFLite int8 weights: scale max|w|/127 (per channel along `axis`, or
  the whole tensor for axis None), q = round(w / scale) in [-127, 127]."""
  if axis is None:
    m = np.abs(w).max()
  else:
    other = tuple(a for a in range(w.ndim) if a != axis)
    m = np.expand_dims(np.abs(w).max(axis=other), other)
  scale = m / 127.0
  return np.clip(np.round(w / scale), -127, 127) * scale


class WeightsTest(absltest.TestCase):

  def test_kernels_land_on_tflites_int8_grid(self):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (3, 3, 8, 16)).astype(np.float32)
    d = rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32)
    for granularity, axis_conv, axis_dw in (("per_channel", 3, 2),
                                            ("per_tensor", None, None)):
      np.testing.assert_allclose(
          qat.quantize_kernel(w, "conv", granularity), numpy_weight_grid(
              w, axis_conv), rtol=0, atol=1e-6)
      np.testing.assert_allclose(
          qat.quantize_kernel(d, "depthwise", granularity),
          numpy_weight_grid(d, axis_dw), rtol=0, atol=1e-6)


class ActivationTest(absltest.TestCase):

  def test_fake_quant_is_uint8_affine_quantization_of_the_range(self):
    x = np.random.default_rng(1).uniform(-3, 5, (1000,)).astype(np.float32)
    lo, hi = -1.7, 3.9
    scale = (hi - lo) / 255
    zero = np.round(-lo / scale)
    want = (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale
    np.testing.assert_allclose(qat.fake_quant(x, [lo, hi]), want, atol=1e-5)

  def test_unset_range_passes_through_and_ema_contains_zero(self):
    x = tf.constant([[0.5, 2.0], [1.0, 3.0]])
    np.testing.assert_array_equal(qat.fake_quant(x, [0.0, 0.0]), x)
    first = qat.updated_range(tf.zeros([2]), x, 0.9)
    np.testing.assert_allclose(first, [0.0, 3.0])  # min widened to 0
    second = qat.updated_range(first, x * 2.0, 0.9)
    np.testing.assert_allclose(second, [0.0, 0.9 * 3.0 + 0.1 * 6.0])


class FoldingTest(absltest.TestCase):

  def test_folded_kernel_equals_conv_then_batch_norm(self):
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 9, 9, 8)), tf.float32)
    c = 8
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    mean, var = rng.normal(size=c), rng.uniform(0.2, 2.0, c)
    gamma, beta, mean, var = (tf.constant(v, tf.float32)
                              for v in (gamma, beta, mean, var))
    scale = gamma * tf.math.rsqrt(var + ops.BN_EPSILON)
    for kind, shape in (("conv", (3, 3, 8, c)), ("depthwise", (3, 3, c, 1))):
      w = tf.constant(rng.normal(size=shape), tf.float32)
      conv = ops.depthwise_conv2d if kind == "depthwise" else ops.conv2d
      want = ops.batch_norm_inference(conv(x, w, None, 2, "SAME"), gamma,
                                      beta, mean, var)
      got = conv(x, qat.fold_kernel(w, kind, scale), beta - mean * scale, 2,
                 "SAME")
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  def test_qat_forward_with_unset_ranges_is_the_float_forward_on_grid_kernels(
      self):
    # Reference: BN folded by params.fold_batch_norm, kernels rounded in
    # numpy, the plain float forward.  Ours: the unfolded QAT forward
    # (folding on the fly, fake-quant ops), activation ranges unset.
    source = models.live_random_source(ALPHA, SIZE)
    net = arch.derive(ALPHA, 1, 10)
    folded = params_lib.to_numpy(params_lib.fold_batch_norm(
        params_lib.to_numpy(source.params), net))
    for layer in net.layers:
      if layer.kind in ("conv", "depthwise", "dense"):
        key = "depthwise_kernel" if layer.kind == "depthwise" else "kernel"
        w = folded[layer.name][key]
        folded[layer.name][key] = numpy_weight_grid(
            w, 2 if layer.kind == "depthwise" else w.ndim - 1)
    x = np.random.default_rng(3).uniform(-1, 1, (4, SIZE, SIZE, 1))
    want = forward.apply(folded, x, alpha=ALPHA, folded=True,
                         classifier_activation=None)
    got = forward.apply(source.params, x, alpha=ALPHA,
                        classifier_activation=None, qat=qat.Options())
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(
        np.abs(want).max()))
    plain = forward.apply(source.params, x, alpha=ALPHA,
                          classifier_activation=None)
    self.assertGreater(float(np.abs(np.asarray(plain) - want).max()), 0.0)

  def test_training_folds_with_batch_statistics(self):
    # One conv unit: the QAT training forward's output before the ReLU6
    # equals conv + BN with the batch's mean and variance (kernel on grid).
    source = models.live_random_source(ALPHA, SIZE)
    x = tf.constant(np.random.default_rng(4).uniform(-1, 1, (4, SIZE, SIZE,
                                                             1)), tf.float32)
    w = source.params["Conv1"]["kernel"]
    bn = source.params["bn_Conv1"]
    raw = ops.conv2d(x, w, None, 2, "SAME")
    mean, var = tf.nn.moments(raw, [0, 1, 2])
    got = qat.folded_conv(x, w, "conv", 2, "SAME", bn["gamma"], bn["beta"],
                          mean, var, ops.BN_EPSILON, "per_channel")
    scale = bn["gamma"] / np.sqrt(np.asarray(var) + ops.BN_EPSILON)
    grid = numpy_weight_grid(np.asarray(w) * np.asarray(scale), 3)
    want = ops.conv2d(x, grid, bn["beta"] - mean * scale, 2, "SAME")
    np.testing.assert_allclose(got, want, atol=1e-4)
    _, stats, ranges = forward.apply(source.params, x, alpha=ALPHA,
                                     training=True, qat=qat.Options())
    m = ops.BN_MOMENTUM
    np.testing.assert_allclose(
        stats["bn_Conv1"]["moving_mean"],
        bn["moving_mean"] * m + np.asarray(mean) * (1 - m), rtol=1e-5,
        atol=1e-6)
    self.assertEqual(set(ranges), set(qat.quant_points(arch.derive(
        ALPHA, 1, 10))))


class FreezeBnTest(absltest.TestCase):
  """Options.freeze_bn (TFLite's BN freeze), as a Python bool and as the
  scalar bool tensor the trainer's in-graph step comparison gives."""

  def test_frozen_training_is_the_inference_forward_and_keeps_statistics(
      self):
    source = models.live_random_source(ALPHA, SIZE)
    x = tf.constant(np.random.default_rng(5).uniform(-1, 1, (4, SIZE, SIZE,
                                                             1)), tf.float32)
    bns = {k: v for k, v in source.params.items() if "moving_mean" in v}
    for frozen in (True, tf.constant(True)):
      y, stats, ranges = forward.apply(
          source.params, x, alpha=ALPHA, training=True,
          classifier_activation=None, qat=qat.Options(freeze_bn=frozen))
      self.assertEqual(set(stats), set(bns))
      for name, bn in bns.items():  # bit-identical: nothing moves
        for key in ("moving_mean", "moving_variance"):
          np.testing.assert_array_equal(stats[name][key], bn[key],
                                        err_msg=f"{name}/{key}")
      # The inference forward over the ranges this batch set (the training
      # pass quantizes with its updated ranges): the same ops on the same
      # values, so the same bits.
      want = forward.apply(source.params, x, alpha=ALPHA,
                           classifier_activation=None,
                           qat=qat.Options(ranges=ranges))
      np.testing.assert_array_equal(y, want)

  def test_unfrozen_tensor_switch_is_the_batch_statistics_fold(self):
    source = models.live_random_source(ALPHA, SIZE)
    x = tf.constant(np.random.default_rng(6).uniform(-1, 1, (4, SIZE, SIZE,
                                                             1)), tf.float32)
    got = forward.apply(source.params, x, alpha=ALPHA, training=True,
                        classifier_activation=None,
                        qat=qat.Options(freeze_bn=tf.constant(False)))
    want = forward.apply(source.params, x, alpha=ALPHA, training=True,
                         classifier_activation=None, qat=qat.Options())
    tf.nest.map_structure(np.testing.assert_array_equal, got, want)
    # ... which is not the inference fold (moving statistics).
    inference = forward.apply(source.params, x, alpha=ALPHA,
                              classifier_activation=None,
                              qat=qat.Options(ranges=want[2]))
    self.assertGreater(float(np.abs(np.asarray(want[0]) - inference).max()),
                       0.1)
    moved = want[1]["bn_Conv1"]["moving_mean"]
    self.assertFalse(np.array_equal(moved,
                                    source.params["bn_Conv1"]["moving_mean"]))


class QuantPointsTest(absltest.TestCase):

  def test_one_point_per_int8_tensor_of_the_graph(self):
    net = arch.derive(ALPHA, 1, 10)
    points = qat.quant_points(net)
    convs = len(net.convs)
    adds = sum(b.residual for b in net.blocks)
    # input + one per conv unit + ADDs + pool + logits
    self.assertLen(points, 1 + convs + adds + 2)
    self.assertEqual(points[:3], ("input", "Conv1_relu",
                                  "expanded_conv_depthwise_relu"))
    self.assertIn("block_2_add", points)
    self.assertNotIn("block_2_project_BN", points[points.index(
        "block_2_add") + 1:])


if __name__ == "__main__":
  absltest.main()
