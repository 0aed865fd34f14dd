"""The micro target refuses what TFLM cannot run, with one line naming the
op or tensor, and TFLM's own interpreter agrees with each refusal."""

import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from mobilenet.core import forward
from mobilenet.testing import models
from mobilenet.testing import tools
from mobilenet.tflite import converter
from mobilenet.tflite import micro_check
from mobilenet.tflite import micro_runtime

CONVERT = "mobilenet/tflite/convert.py"
SIZE = 32


class _Gelu(tf.Module):
  """GELU: a TFLite builtin with int8 kernels, which TFLM does not have."""

  @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
  def __call__(self, x):
    return tf.nn.gelu(x * 2.0 + 0.5)


class MicroCheckTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = models.live_random_source(0.35, SIZE)
    cls.rep = converter.representative_batch(
        converter.calibration_set(None, 8), SIZE, 1, "tf")

  def _convert(self, quantize, batch_size=1):
    model = forward.build(self.source.params, alpha=0.35,
                          input_shape=(SIZE, SIZE, 1), classes=10,
                          batch_size=batch_size)
    return converter.convert(model.get_concrete_function(), quantize,
                             self.rep, model)

  def test_int8_model_passes_with_its_ops(self):
    ops = micro_check.check(self._convert("int8"))
    self.assertEqual(ops.names, ("ADD", "CONV_2D", "DEPTHWISE_CONV_2D",
                                 "FULLY_CONNECTED", "MEAN", "SOFTMAX"))
    self.assertEqual(ops.registrations[1], "AddConv2D")

  def test_float_io_is_refused_naming_the_input(self):
    data = self._convert("float")
    with self.assertRaisesRegex(
        micro_check.MicroError,
        r"^input tensor 'serving_default_images:0' is float32; .*"
        "--quantize=int8"):
      micro_check.check(data)

  def test_dynamic_batch_is_refused_naming_the_tensor(self):
    data = self._convert("int8", batch_size=None)
    with self.assertRaisesRegex(
        micro_check.MicroError,
        r"tensor 'serving_default_images:0' has a dynamic shape "
        r"\[-1, 32, 32, 1\].*static batch of 1"):
      micro_check.check(data)

  def test_unsupported_op_is_refused_and_tflm_agrees(self):
    module = _Gelu()
    samples = np.random.RandomState(0).randn(16, 8).astype(np.float32)
    data = converter.convert(module.__call__.get_concrete_function(), "int8",
                             samples, module)
    with self.assertRaisesRegex(micro_check.MicroError,
                                r"operator #\d+ is GELU, which TFLite Micro "
                                "has no kernel for"):
      micro_check.check(data)
    with self.assertRaisesRegex(micro_runtime.MicroRuntimeError, "GELU"):
      micro_runtime.MicroModel(data)

  def test_cli_refusals_are_one_line_and_write_nothing(self):
    cases = {
        # Float I/O: refused by the check, naming the input tensor.
        "float": (["--weights", "random", "--quantize", "float"],
                  r"^error: input tensor '.*' is float32"),
        # Untrained Keras-init weights: activation scales of ~1e-9 make one
        # of TFLM's kernels abort() while preparing; the tool survives it.
        "abort": (["--weights", "random", "--num_calibration", "8"],
                  r"^error: mobilenet_v2_random_a035_32x32x3_int8.tflite: "
                  "TFLite Micro died of SIGABRT"),
    }
    for what, (args, pattern) in cases.items():
      with self.subTest(what):
        out = os.path.join(self.create_tempdir().full_path, "out")
        r = tools.run_tool(CONVERT, "--save_to", out, "--target", "micro",
                           "--alpha", "0.35", "--input_size", str(SIZE),
                           *args)
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("Traceback", r.stderr)
        lines = tools.error_lines(r)
        self.assertLen(lines, 1, r.stderr)
        self.assertRegex(lines[0], pattern)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()
