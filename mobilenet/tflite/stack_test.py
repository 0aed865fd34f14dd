"""Proves the TFLite stack inside the Bazel sandbox: TF converts, LiteRT runs."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from ai_edge_litert.interpreter import Interpreter


class StackTest(absltest.TestCase):

  def test_int8_conv_matches_tf(self):
    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 4)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def conv(x):
      return tf.nn.relu6(tf.nn.conv2d(x, kernel, 1, "SAME"))

    samples = np.random.default_rng(1).uniform(-1, 1, (8, 1, 8, 8, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([conv.get_concrete_function()], conv)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], samples[0])
    interpreter.invoke()
    got = interpreter.get_tensor(out["index"])
    want = conv(samples[0]).numpy()
    self.assertEqual(got.shape, want.shape)
    # int8 activations: error bounded by a few quantization steps of the 0..6 range.
    self.assertLess(np.abs(got - want).max(), 0.2)


if __name__ == "__main__":
  absltest.main()
