"""Runtime: file checks, quantized I/O, batches, channels and sizes."""

import os

import numpy as np
from absl.testing import absltest

from mobilenet.core import preprocess
from mobilenet.tflite import converter
from mobilenet.tflite import runtime
from mobilenet.testing import models


def _samples():
  d = os.path.join(os.path.dirname(converter.default_calibration_dir()),
                   "samples")
  return [os.path.join(d, f"digit_{i}.png") for i in (0, 2, 3)]


class FileCheckTest(absltest.TestCase):

  def test_bad_files_raise_one_clear_error(self):
    d = self.create_tempdir()
    text = d.create_file("m.tflite", "hello, not a model").full_path
    png = _samples()[0]
    for path, pattern in ((os.path.join(d.full_path, "none.tflite"),
                           "no such model file"),
                          (d.full_path, "is a directory"),
                          (text, "TFL3"), (png, "TFL3")):
      with self.subTest(path):
        with self.assertRaisesRegex(runtime.ModelFileError, pattern):
          runtime.Model(path)

  def test_quantize_rounds_half_away_from_zero_and_saturates(self):
    q = runtime.quantize([0.5, -0.5, 1.5, 2.5, 1000, -1000], 1.0, 0, np.int8)
    np.testing.assert_array_equal(q, [1, -1, 2, 3, 127, -128])
    q = runtime.quantize([0.0, 0.02, -1.0], 0.01, 128, np.uint8)
    np.testing.assert_array_equal(q, [128, 130, 28])


class ModelTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # 3 channels, a non-square-friendly size and no classifier softmax: the
    # runtime must read all of it from the file.
    source = models.live_random_source(0.35, 40, channels=3, classes=7)
    cls.tf_model = converter.build_model(source, classifier_activation=None)
    cls.pixels = preprocess.load_images(_samples(), 40, channels=3, mode="raw")
    cls.want = cls.tf_model(preprocess.preprocess_input(cls.pixels)[:1]).numpy()
    cal = converter.calibration_set(None, 16)
    rep = converter.representative_batch(cal, 40, 3, "tf")
    fn = cls.tf_model.get_concrete_function()
    cls.files = {}
    d = absltest.get_default_test_tmpdir()
    for mode in ("float", "uint8"):
      data = converter.convert(fn, mode, rep, cls.tf_model)
      cls.files[mode] = os.path.join(d, mode + ".tflite")
      with open(cls.files[mode], "wb") as f:
        f.write(data)

  def test_reads_shape_and_types_from_the_file(self):
    m = runtime.Model(self.files["uint8"], num_threads=2)
    self.assertEqual((m.input_size, m.channels, m.num_classes),
                     ((40, 40), 3, 7))
    self.assertEqual(m.input_dtype, np.uint8)
    io = m.describe_io()
    self.assertGreater(io["input"]["scale"], 0)

  def test_float_model_matches_tensorflow(self):
    m = runtime.Model(self.files["float"])
    got = m.predict_pixels(self.pixels[:1], "tf")
    np.testing.assert_allclose(got, self.want, atol=1e-4 * np.abs(self.want).max())

  def test_uint8_batch_equals_single_images_and_tracks_float(self):
    m = runtime.Model(self.files["uint8"])
    batch = m.predict_pixels(self.pixels, "tf")
    self.assertEqual(batch.shape, (3, 7))
    for i in range(3):
      np.testing.assert_array_equal(batch[i:i + 1],
                                    m.predict_pixels(self.pixels[i], "tf"))
    want = self.tf_model(preprocess.preprocess_input(self.pixels[1:2])).numpy()
    err = np.abs(batch[1] - want[0]).mean() / np.abs(want).max()
    corr = np.corrcoef(batch[1], want[0])[0, 1]
    print(f"uint8 vs float: mean |q - f| / max |f| = {err:.4f}, "
          f"correlation {corr:.5f}")
    # Measured (oneDNN on / off) 0.173 / 0.176 and 0.930 / 0.933 on this
    # random net; ~2x on the error, ~3x on 1 - correlation.  An all-zero or
    # constant output has no correlation (nan) and fails.
    self.assertLess(err, 0.35)
    self.assertGreater(corr, 0.8)

  def test_scores_are_the_raw_output_dequantized_as_litert_states(self):
    # A zero point off by one shifts every score by one step: inside the
    # tracks-float bounds above and invisible to argmax, so check it exactly
    # against LiteRT's own raw output and output quantization.
    m = runtime.Model(self.files["uint8"])
    interp = runtime.Interpreter(self.files["uint8"])
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero_point = out["quantization"]
    self.assertNotEqual(zero_point, 0)  # else the zero point is not tested
    for i in range(len(self.pixels)):
      interp.set_tensor(inp["index"], m.quantize_pixels(self.pixels[i], "tf"))
      interp.invoke()
      raw = interp.get_tensor(out["index"]).astype(np.float64)
      np.testing.assert_allclose(  # float32 rounding only, far below a step
          m.predict_pixels(self.pixels[i], "tf"), (raw - zero_point) * scale,
          rtol=1e-6, atol=0)

  def test_truncated_model_is_refused(self):
    with open(self.files["uint8"], "rb") as f:
      data = f.read()
    d = self.create_tempdir()
    for n in (6, 12, 100, len(data) // 2, len(data) - 16):
      path = d.create_file(f"cut{n}.tflite", data[:n]).full_path
      with self.subTest(n):
        with self.assertRaises(runtime.ModelFileError):
          runtime.Model(path)


if __name__ == "__main__":
  absltest.main()
