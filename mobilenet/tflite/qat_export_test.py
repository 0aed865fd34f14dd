"""A QAT-trained model converts to full-integer int8 from its learned ranges
alone: no representative dataset reaches the converter, LiteRT reports the
activation scales and zero points the ranges give, and the model is an
ordinary full-integer one (the integer-exact forward equals TFLite Micro
and LiteRT's reference kernels bit for bit)."""

import dataclasses
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from mobilenet.core import preprocess
from mobilenet.keras import model as model_lib
from mobilenet.testing import models
from mobilenet.tflite import converter
from mobilenet.tflite import exact_forward
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import qat_export
from mobilenet.tflite import runtime

ALPHA, SIZE = 0.35, 32


def digits(n, offset=0):
  paths = preprocess.find_images(converter.default_calibration_dir())
  return preprocess.load_images(paths[offset:offset + n], SIZE, channels=1)


def qat_trained(granularity):
  """(ModelSource with a qat section, Keras model, kernels before) after a
  few SGD steps of QAT on real digits, starting from live random weights."""
  source = models.live_random_source(ALPHA, SIZE, channels=1, classes=10)
  model = model_lib.MobileNetV2((SIZE, SIZE, 1), ALPHA, weights=None,
                                classes=10, classifier_activation=None,
                                qat=granularity)
  model_lib.set_params(model, source.params)
  before = model_lib.get_params(model)
  optimizer = tf.keras.optimizers.SGD(0.05)
  labels = tf.constant(np.arange(16) % 10)
  for step in range(3):
    x = tf.constant(digits(16, 16 * step), tf.float32)
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, model(x, training=True)))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))
  qat_source = dataclasses.replace(
      source, params=model_lib.get_params(model), metadata={"qat": {
          "granularity": granularity,
          "ranges": model_lib.qat_ranges(model)}})
  return qat_source, model, before, grads, variables


def activation_quantization(tflite):
  """[(scale, zero point)] of the model input and every op's output."""
  interp = runtime.Model(tflite, use_default_delegates=False).interpreter
  details = {d["index"]: d for d in interp.get_tensor_details()}
  indices = [interp.get_input_details()[0]["index"]]
  for op in interp._get_ops_details():  # pylint: disable=protected-access
    indices.extend(int(i) for i in op["outputs"])
  return [details[i]["quantization"] for i in indices], interp


class QatExportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source, cls.model, cls.before, cls.grads, cls.vars = qat_trained(
        "per_channel")
    orig = tf.lite.TFLiteConverter.convert
    cls.seen = []

    def spy(self):
      cls.seen.append(self.representative_dataset)
      return orig(self)

    with mock.patch.object(tf.lite.TFLiteConverter, "convert", spy):
      cls.converted = qat_export.convert_source(cls.source)
    cls.tflite = cls.converted.tflite

  def test_straight_through_gradients_reach_every_kernel(self):
    for v, g in zip(self.vars, self.grads):
      if v.name.endswith("kernel"):
        self.assertGreater(float(tf.reduce_max(tf.abs(g))), 0.0, v.path)
    after = model_lib.get_params(self.model)
    for name in ("Conv1", "block_5_depthwise", "Conv_1", "predictions"):
      key = "depthwise_kernel" if "depthwise" in name else "kernel"
      self.assertFalse(np.array_equal(self.before[name][key],
                                      after[name][key]), name)

  def test_converted_without_representative_dataset_full_integer(self):
    self.assertEqual(self.seen, [None])
    interp = runtime.Model(self.tflite,
                           use_default_delegates=False).interpreter
    dtypes = {d["dtype"] for d in interp.get_tensor_details()}
    self.assertEqual(dtypes, {np.int8, np.int32})
    ops = {op["op_name"] for op in interp._get_ops_details()}  # pylint: disable=protected-access
    self.assertNotIn("QUANTIZE", ops)
    self.assertNotIn("DEQUANTIZE", ops)
    meta = self.converted.metadata
    self.assertTrue(meta["qat"]["qat"])
    self.assertEqual(meta["qat"]["granularity"], "per_channel")
    self.assertIn("no representative dataset", meta["qat"]["ranges_from"])
    self.assertIsNone(meta["calibration"])

  def test_activation_scales_are_the_trained_ranges(self):
    got, _ = activation_quantization(self.tflite)
    want = []
    for lo, hi in self.source.metadata["qat"]["ranges"].values():
      scale = (hi - lo) / 255.0  # uint8 affine, zero point nudged to a step
      want.append((scale, int(round(-lo / scale)) - 128))
    want.append((1.0 / 256.0, -128))  # softmax: TFLite's fixed output
    got = sorted((float(s), int(z)) for s, z in got)
    want = sorted(want)
    self.assertLen(got, len(want))
    for (gs, gz), (ws, wz) in zip(got, want):
      self.assertAlmostEqual(gs, ws, delta=ws * 1e-6)
      self.assertEqual(gz, wz)

  def test_exact_forward_equals_tflm_and_reference_kernels(self):
    x = np.random.default_rng(0).integers(-128, 128, (4, SIZE, SIZE, 1),
                                          np.int8)
    ours = exact_forward.ExactModel(self.tflite).run_raw(x)
    np.testing.assert_array_equal(
        ours, micro_runtime.MicroModel(self.tflite).run_raw(x))
    ref = runtime.Model(self.tflite, reference_kernels=True)
    np.testing.assert_array_equal(ours, ref.run_raw(x))
    self.assertGreater(len(np.unique(ours)), 5)


class PerTensorTest(absltest.TestCase):

  def test_one_weight_scale_per_tensor(self):
    source = qat_trained("per_tensor")[0]
    tflite = qat_export.convert_source(source).tflite
    interp = runtime.Model(tflite, use_default_delegates=False).interpreter
    details = {d["index"]: d for d in interp.get_tensor_details()}
    convs = [op for op in interp._get_ops_details()  # pylint: disable=protected-access
             if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                  "FULLY_CONNECTED")]
    self.assertLen(convs, 52 + 1)  # the classifier too (it was per-channel)
    for op in convs:
      scales = details[int(op["inputs"][1])]["quantization_parameters"][
          "scales"]
      self.assertLen(scales, 1, op)


if __name__ == "__main__":
  absltest.main()
