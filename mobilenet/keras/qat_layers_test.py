"""The Keras QAT model (qat_layers.py) against the core raw-op QAT forward
(forward.apply with qat=): same outputs, BN statistics, ranges and
gradients from the same weights and ranges, in training and inference
mode, both granularities; and the BN freeze of the Keras layers."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from mobilenet.core import forward
from mobilenet.core import qat
from mobilenet.keras import model as model_lib
from mobilenet.keras import qat_layers
from mobilenet.testing import models

ALPHA, SIZE, CLASSES = 0.35, 32, 10
# Both builders run the same core ops (ops.py, qat.py) in the same order on
# the same float32 values, one op at a time (eager), so the forward is
# compared bit for bit: outputs, new BN statistics and ranges (measured
# equal with oneDNN on and off; one ulp moved across a fake-quant rounding
# boundary would change a value by a whole step, so no tolerance would be
# tight there anyway).  Gradients are bit-equal with oneDNN off.  With it
# on they are not: the op chains differ in one place, Keras' ZeroPadding
# layer + VALID conv where the core runs a SAME conv (forward._conv), whose
# oneDNN backward can sum in another order; the ulp differences grow
# through the BN backward's batch-mean subtraction.  Measured, as a fraction
# of a variable's largest gradient: 1.9e-7 (inference), 8.7e-5 (training).
# Bound 1e-3 of it; a wrong gradient path is far off (batch statistics
# without gradient in the Keras layer: 370x).
GRAD_RTOL = 1e-3


def _batch(seed):
  return tf.constant(np.random.default_rng(seed).uniform(
      -1, 1, (6, SIZE, SIZE, 1)), tf.float32)


def _keras_key(layer, key):
  # Keras 3 calls the depthwise weight "kernel" as well.
  return f"{layer}/{'kernel' if key == 'depthwise_kernel' else key}"


class ParityTest(parameterized.TestCase):

  def _models(self, granularity):
    """(Keras QAT model, its params, its ranges): live random weights and
    ranges set by one training pass on another batch."""
    source = models.live_random_source(ALPHA, SIZE, classes=CLASSES)
    model = model_lib.MobileNetV2((SIZE, SIZE, 1), ALPHA, weights=None,
                                  classes=CLASSES, classifier_activation=None,
                                  qat=granularity)
    model_lib.set_params(model, source.params)
    model(_batch(0), training=True)
    ranges = model_lib.qat_ranges(model)
    self.assertTrue(all(hi > lo for lo, hi in ranges.values()))
    return model, model_lib.get_params(model), ranges

  def _core(self, params, x, granularity, ranges, training):
    """(outputs, {variable path: gradient}) of the core forward; with
    `training` also its new BN statistics and ranges."""
    consts = {l: {k: tf.constant(v) for k, v in keys.items()}
              for l, keys in params.items()}
    watched = {_keras_key(l, k): v for l, keys in consts.items()
               for k, v in keys.items() if not k.startswith("moving_")}
    options = qat.Options(granularity, {k: np.asarray(v, np.float32)
                                        for k, v in ranges.items()})
    with tf.GradientTape() as tape:
      tape.watch(list(watched.values()))
      out = forward.apply(consts, x, alpha=ALPHA, classifier_activation=None,
                          training=training, qat=options)
      y = out[0] if training else out
      loss = tf.reduce_sum(y * tf.sin(tf.range(CLASSES, dtype=tf.float32)))
    grads = dict(zip(watched, tape.gradient(loss, list(watched.values()))))
    return out, grads

  def _keras(self, model, x, training):
    with tf.GradientTape() as tape:
      y = model(x, training=training)
      loss = tf.reduce_sum(y * tf.sin(tf.range(CLASSES, dtype=tf.float32)))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    return y, {v.path: g for v, g in zip(variables, grads)}

  def _assert_grads_equal(self, got, want):
    self.assertEqual(set(got), set(want))
    worst = 0.0
    for name, g in want.items():
      scale = float(tf.reduce_max(tf.abs(g)))
      diff = float(tf.reduce_max(tf.abs(got[name] - g)))
      worst = max(worst, diff / scale)
      np.testing.assert_allclose(got[name], g, rtol=GRAD_RTOL,
                                 atol=GRAD_RTOL * scale, err_msg=name)
    print(f"gradients: max |keras - core| / max |core| {worst:.3g}")
    # Straight-through gradients reach every weight (the loss depends on
    # every logit).
    self.assertTrue(all(float(tf.reduce_max(tf.abs(g))) > 0
                        for g in want.values()))

  @parameterized.parameters("per_channel", "per_tensor")
  def test_inference_outputs_and_gradients_equal(self, granularity):
    model, params, ranges = self._models(granularity)
    x = _batch(1)
    want, want_grads = self._core(params, x, granularity, ranges, False)
    got, got_grads = self._keras(model, x, False)
    np.testing.assert_array_equal(got, want)
    self._assert_grads_equal(got_grads, want_grads)
    # Inference changed nothing: ranges and statistics as before.
    self.assertEqual(model_lib.qat_ranges(model), ranges)

  @parameterized.parameters("per_channel", "per_tensor")
  def test_training_outputs_statistics_ranges_and_gradients_equal(
      self, granularity):
    model, params, ranges = self._models(granularity)
    x = _batch(2)
    (want, stats, new_ranges), want_grads = self._core(
        params, x, granularity, ranges, True)
    got, got_grads = self._keras(model, x, True)
    np.testing.assert_array_equal(got, want)
    self._assert_grads_equal(got_grads, want_grads)
    after = model_lib.get_params(model)
    for name, keys in stats.items():
      for key, value in keys.items():
        np.testing.assert_array_equal(after[name][key], value,
                                      err_msg=f"{name}/{key}")
        self.assertFalse(np.array_equal(value, params[name][key]), name)
    got_ranges = model_lib.qat_ranges(model)
    self.assertEqual(set(got_ranges), set(new_ranges))
    for name, value in new_ranges.items():
      np.testing.assert_array_equal(np.float32(got_ranges[name]), value,
                                    err_msg=name)


class FreezeBnAfterTest(absltest.TestCase):

  def test_switches_at_the_step_and_then_runs_the_inference_fold(self):
    source = models.live_random_source(ALPHA, SIZE, classes=CLASSES)
    model = model_lib.MobileNetV2((SIZE, SIZE, 1), ALPHA, weights=None,
                                  classes=CLASSES, classifier_activation=None,
                                  qat="per_channel")
    model_lib.set_params(model, source.params)
    step = tf.Variable(0, dtype=tf.int64)
    qat_layers.freeze_bn_after(model, step, 2)
    bns = [l for l in model.layers if isinstance(l, qat_layers.QatBatchNorm)]
    self.assertLen(bns, 52)

    def stats():
      return [v.numpy() for l in bns for v in (l.moving_mean,
                                               l.moving_variance)]

    @tf.function  # traced once: the switch is in the graph
    def train_forward(x):
      y = model(x, training=True)
      step.assign_add(1)
      return y

    for i in range(4):
      x = _batch(10 + i)
      before = stats()
      y = train_forward(x)
      after = stats()
      # What inference mode gives now (the ranges this pass set).
      y_inference = model(x, training=False)
      if i < 2:  # batch statistics: every moving average moves
        for a, b in zip(before, after):
          self.assertFalse(np.array_equal(a, b), i)
        self.assertGreater(float(tf.reduce_max(tf.abs(y - y_inference))),
                           0.1)
      else:  # frozen: the same bits, and the inference fold's outputs
        for a, b in zip(before, after):
          np.testing.assert_array_equal(a, b)
        # (tf.function vs eager: the same kernels on the same values.)
        np.testing.assert_array_equal(y, y_inference)
    self.assertEqual(train_forward.experimental_get_tracing_count(), 1)


if __name__ == "__main__":
  absltest.main()
