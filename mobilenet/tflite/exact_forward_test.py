"""The integer-exact forward against the real interpreters: TFLite Micro's
outputs and every tensor of LiteRT's reference kernels (BUILTIN_REF with
all tensors preserved), bit for bit."""

import os

from absl.testing import absltest
import numpy as np

from mobilenet.core import labels
from mobilenet.core import preprocess
from mobilenet.testing import models
from mobilenet.tflite import converter
from mobilenet.tflite import exact_forward
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import runtime


def heldout_inputs(model):
  paths = preprocess.find_images(labels.data_path("mnist_heldout"))
  return model.quantize_pixels(model.load_images(paths), "tf")


def assert_every_tensor_equal(test, tflite, exact_model, batch):
  """Every tensor LiteRT's reference kernels keep equals ours; returns how
  many tensors (per image) were compared."""
  ref = runtime.Model(tflite, reference_kernels=True,
                      preserve_all_tensors=True)
  ours = exact_model.forward(batch)
  computed = exact_model.activation_indices()
  compared = 0
  for i in range(len(batch)):
    ref.run_raw(batch[i:i + 1])
    seen = set()
    for detail, value in ref.tensors():
      index = int(detail["index"])
      if index not in computed:
        continue
      seen.add(index)
      np.testing.assert_array_equal(
          ours[index][i:i + 1], value,
          err_msg=f"image {i}, tensor {index} {detail['name']!r}")
    test.assertEqual(seen, computed)  # none of ours went unchecked
    compared += len(seen)
  return compared


class BundledModelTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.path = runtime.default_model()
    cls.model = exact_forward.ExactModel(cls.path)
    cls.x = heldout_inputs(cls.model)

  def test_heldout_digits_equal_tflm_bit_for_bit(self):
    self.assertLen(self.x, 1000)
    ours = self.model.run_raw(self.x)
    micro = micro_runtime.MicroModel(self.path).run_raw(self.x)
    self.assertEqual(ours.dtype, np.int8)
    np.testing.assert_array_equal(ours, micro)
    # Not a degenerate agreement: the outputs are real digit predictions.
    self.assertGreater(len(np.unique(ours)), 50)

  def test_every_tensor_equals_litert_reference_kernels(self):
    # Every 100th digit: one of each class.
    batch = self.x[::100]
    compared = assert_every_tensor_equal(self, self.path, self.model, batch)
    ops = self.model.graph.ops
    self.assertEqual(compared, len(batch) * (len(ops) + 1))

  def test_predict_matches_litert_interface(self):
    pixels = self.model.load_images(
        [os.path.join(labels.data_path("mnist_heldout"), "7", f)
         for f in sorted(os.listdir(os.path.join(
             labels.data_path("mnist_heldout"), "7")))[:3]])
    ours = self.model.predict_pixels(pixels, "tf")
    ref = runtime.Model(self.path, reference_kernels=True)
    np.testing.assert_array_equal(ours, ref.predict_pixels(pixels, "tf"))
    self.assertEqual(list(ours.argmax(1)), [7, 7, 7])


class OtherModelsTest(absltest.TestCase):

  def test_uint8_io_model_with_quantize_ops(self):
    source = models.live_random_source(0.35, 32, channels=1, classes=10)
    tflite = converter.convert_source(source, "uint8",
                                      num_calibration=16).tflite
    model = exact_forward.ExactModel(tflite)
    self.assertIn("QUANTIZE", {op.name for op in model.graph.ops})
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1), np.uint8)
    assert_every_tensor_equal(self, tflite, model, x)

  def test_float_model_is_refused_in_one_line(self):
    source = models.live_random_source(0.35, 32, channels=1, classes=10)
    tflite = converter.convert_source(source, "float").tflite
    with self.assertRaisesRegex(exact_forward.ExactModelError,
                                "full-integer") as e:
      exact_forward.ExactModel(tflite)
    self.assertNotIn("\n", str(e.exception))

  def test_truncated_file_is_refused(self):
    data = open(runtime.default_model(), "rb").read()
    for cut in (data[:10], data[:len(data) // 2], b""):
      with self.assertRaises(runtime.ModelFileError):
        exact_forward.ExactModel(cut)


class FullSizeTest(absltest.TestCase):
  """alpha 1.0 at 224 px with real-scale random weights (BN statistics from
  real images): 1280-channel layers, 1000 classes, the deepest sums."""

  def test_alpha_1_224_equals_tflm_and_reference_kernels(self):
    tflite = models.live_random_int8(1.0, 224, 3, 1000).tflite
    model = exact_forward.ExactModel(tflite)
    x = np.random.default_rng(0).integers(-128, 128, (2, 224, 224, 3),
                                          np.int8)
    ours = model.run_raw(x)
    np.testing.assert_array_equal(ours,
                                  micro_runtime.MicroModel(tflite).run_raw(x))
    compared = assert_every_tensor_equal(self, tflite, model, x)
    self.assertEqual(compared, 2 * (len(model.graph.ops) + 1))
    # The widest layer's accumulators are live, not clamped flat.
    last_conv = [op for op in model.graph.ops if op.name == "CONV_2D"][-1]
    self.assertGreater(len(np.unique(model.forward(x[:1])[
        last_conv.outputs[0]])), 100)


if __name__ == "__main__":
  absltest.main()
