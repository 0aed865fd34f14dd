"""Converter: calibration order and hashing, conversion modes, sidecar,
determinism and atomic saving, against TF, Pillow and the files on disk."""

import hashlib
import json
import os
import shutil
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from PIL import Image

from mobilenet.core import preprocess
from mobilenet.tflite import converter
from mobilenet.testing import models

ALPHA, SIZE = 0.35, 32


def _random_source():
  return models.live_random_source(ALPHA, SIZE, channels=1, classes=10)


class CalibrationTest(absltest.TestCase):

  def test_first_n_in_sorted_order_and_hash_covers_content(self):
    src = converter.default_calibration_dir()
    tmp = self.create_tempdir().full_path
    names = sorted(os.listdir(src))[:12]
    for n in reversed(names):  # creation order must not matter
      shutil.copy(os.path.join(src, n), tmp)
    cal = converter.calibration_set(tmp, 5)
    self.assertEqual([os.path.basename(p) for p in cal.paths], names[:5])
    h1 = cal.files_sha256
    with open(cal.paths[2], "ab") as f:
      f.write(b"\0")
    self.assertNotEqual(h1, converter.calibration_set(tmp, 5).files_sha256)
    with self.assertRaisesRegex(converter.ConversionError, "only 12 images"):
      converter.calibration_set(tmp, 13)

  def test_representative_batch_is_keras_normalisation_of_pillow_pixels(self):
    cal = converter.calibration_set(None, 3)
    got = converter.representative_batch(cal, 40, 1, "tf")
    for path, x in zip(cal.paths, got):
      img = Image.open(path).convert("L").resize((40, 40),
                                                 Image.Resampling.BILINEAR)
      want = np.asarray(img, np.float32)[..., None] / 127.5 - 1.0
      np.testing.assert_allclose(x, want, atol=1e-6)


class ConvertTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source = _random_source()
    cls.model = converter.build_model(cls.source, classifier_activation=None)
    cal = converter.calibration_set(None, 20)
    cls.rep = converter.representative_batch(cal, SIZE, 1, "tf")
    cls.images = preprocess.load_images(
        preprocess.find_images(converter.default_calibration_dir())[20:40],
        SIZE, channels=1)
    cls.want = np.stack([cls.model(x[None]).numpy()[0] for x in cls.images])

  def _run(self, tflite):
    # tf.lite.Interpreter as the independent reference for the I/O details.
    it = tf.lite.Interpreter(model_content=tflite)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in self.images:
      x = x[None]
      if inp["dtype"] != np.float32:
        s, z = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / s) + z, info.min, info.max).astype(inp["dtype"])
      it.set_tensor(inp["index"], x)
      it.invoke()
      y = it.get_tensor(out["index"])[0]
      if out["dtype"] != np.float32:
        s, z = out["quantization"]
        y = (y.astype(np.float32) - z) * s
      outs.append(y)
    return inp, out, np.stack(outs)

  def test_modes(self):
    spread = np.abs(self.want).max()
    results = {}
    # Bounds: mean |got - float| / max |float| and correlation with float.
    # Measured on this random net (oneDNN off / on): float 2.5e-6 / 2.6e-6;
    # float16 0.0058 / 0.0058, correlation 0.99973; dynamic 0.038 / 0.037,
    # 0.9911 / 0.9914; int8 and uint8 0.160 / 0.162, 0.842 / 0.837.  Each
    # bound leaves ~2x on the error and ~3x on 1 - correlation, except int8:
    # a random 52-BN net amplifies int8 rounding chaotically, so it keeps
    # 1.5x (0.25, 0.8), and the sharp int8 checks are on the trained model
    # (tflite_model_test: top-1 agreement >= 99 % on 1,000 digits; float16
    # and dynamic range there too).
    for mode, io_type, tol, min_corr in (
        ("float", np.float32, 1e-4, 0.9999),
        ("float16", np.float32, 0.01, 0.999),
        ("dynamic", np.float32, 0.075, 0.97),
        ("int8", np.int8, 0.25, 0.8),
        ("uint8", np.uint8, 0.25, 0.8)):
      with self.subTest(mode):
        tflite = converter.convert(self.model.get_concrete_function(), mode,
                                   self.rep, self.model)
        inp, out, got = self._run(tflite)
        self.assertEqual(inp["dtype"], io_type)
        self.assertEqual(out["dtype"], io_type)
        err = np.abs(got - self.want).mean() / spread
        corr = np.corrcoef(got.ravel(), self.want.ravel())[0, 1]
        print(f"{mode}: mean |got - float| / max |float| = {err:.3g}, "
              f"correlation {corr:.6f}")
        self.assertLess(err, tol)
        self.assertGreater(corr, min_corr)
        results[mode] = got
    # Same calibration, same int8 graph: uint8 I/O only shifts by 128.
    np.testing.assert_allclose(results["uint8"], results["int8"], atol=1e-6)

  def test_int8_is_deterministic_and_weights_per_channel(self):
    fn = self.model.get_concrete_function()
    a = converter.convert(fn, "int8", self.rep, self.model)
    b = converter.convert(fn, "int8", self.rep, self.model)
    self.assertEqual(hashlib.sha256(a).hexdigest(),
                     hashlib.sha256(b).hexdigest())
    it = tf.lite.Interpreter(model_content=a)
    per_channel = [d for d in it.get_tensor_details()
                   if len(d["quantization_parameters"]["scales"]) > 1]
    self.assertNotEmpty(per_channel)
    # The per-tensor guard (the converter's switch is experimental) refuses
    # this model, naming the first per-channel op LiteRT also sees.
    first = next(op for op in it._get_ops_details()  # pylint: disable=protected-access
                 if op["op_name"] == "CONV_2D")
    with self.assertRaisesRegex(
        converter.ConversionError,
        rf"left per-channel weights in op {first['index']} \(CONV_2D: "):
      converter.check_per_tensor(a)

  def test_per_tensor_int8_has_one_scale_per_weight_tensor(self):
    fn = self.model.get_concrete_function()
    a = converter.convert(fn, "int8", self.rep, self.model,
                          granularity="per_tensor")
    it = tf.lite.Interpreter(model_content=a)
    details = it.get_tensor_details()
    weighted = [op for op in it._get_ops_details()  # pylint: disable=protected-access
                if op["op_name"] in converter.WEIGHTED_OPS]
    self.assertLen(weighted, 53)
    for op in weighted:
      w = details[op["inputs"][1]]["quantization_parameters"]["scales"]
      self.assertLen(w, 1, op["op_name"])
    # Every op still computes in int8: only the scales changed.
    inp, out, got = self._run(a)
    self.assertEqual((inp["dtype"], out["dtype"]), (np.int8, np.int8))
    self.assertTrue(np.all(np.isfinite(got)))

  def test_full_integer_needs_calibration(self):
    with self.assertRaisesRegex(converter.ConversionError, "calibration"):
      converter.convert(self.model.get_concrete_function(), "int8", None)
    with self.assertRaisesRegex(converter.ConversionError, "--quantize"):
      converter.convert(self.model.get_concrete_function(), "int4")
    for mode in ("float16", "dynamic", "float"):
      with self.assertRaisesRegex(converter.ConversionError,
                                  "per_tensor is for full-integer"):
        converter.convert(self.model.get_concrete_function(), mode,
                          granularity="per_tensor")


class SidecarAndSaveTest(absltest.TestCase):

  def test_sidecar_and_atomic_save(self):
    source = _random_source()
    conv = converter.convert_source(source, "uint8", num_calibration=10)
    meta = conv.metadata
    it = tf.lite.Interpreter(model_content=conv.tflite)
    inp = it.get_input_details()[0]
    self.assertEqual(meta["input"]["dtype"], "uint8")
    self.assertEqual((meta["input"]["scale"], meta["input"]["zero_point"]),
                     inp["quantization"])
    self.assertEqual(meta["tflite_sha256"],
                     hashlib.sha256(conv.tflite).hexdigest())
    self.assertEqual(meta["calibration"]["count"], 10)
    self.assertEqual((meta["granularity"], meta["weights_quantization"]),
                     ("per_channel", "int8 per-channel"))
    self.assertEqual(meta["calibration"]["dir"], "data/calibration")
    self.assertEqual((meta["alpha"], meta["channels"], meta["input_size"]),
                     (ALPHA, 1, [SIZE, SIZE]))
    self.assertEqual(meta["versions"]["tensorflow"], tf.__version__)
    self.assertEqual(meta["versions"]["numpy"], np.__version__)

    out = self.create_tempdir().full_path
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
      calls.append(dst)
      if dst.endswith(".json"):
        raise OSError("disk full")
      real_replace(src, dst)

    with mock.patch.object(os, "replace", flaky):
      with self.assertRaises(OSError):
        converter.save(conv, out)
    self.assertLen(calls, 2)
    self.assertEqual(os.listdir(out), [])
    tfl, js = converter.save(conv, out)
    with open(tfl, "rb") as f:
      self.assertEqual(f.read(), conv.tflite)
    with open(js) as f:
      self.assertEqual(json.load(f)["tflite_sha256"], meta["tflite_sha256"])
    self.assertEqual(sorted(os.listdir(out)),
                     sorted(os.path.basename(p) for p in (tfl, js)))


if __name__ == "__main__":
  absltest.main()
