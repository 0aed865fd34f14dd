"""infer CLI: same top-1 as the float Keras model for int8, uint8 and float16
models of the bundled digits; tensor dumps; bad input."""

import glob
import os
import sys

import keras
import numpy as np
from absl.testing import absltest
from ai_edge_litert.interpreter import Interpreter

from mobilenet.core import model_source
from mobilenet.core import preprocess
from mobilenet.testing import keras_reference
from mobilenet.testing import tools
from mobilenet.tflite import converter
from mobilenet.tflite import runtime

INFER = "mobilenet/tflite/infer.py"

SAMPLES = sorted(glob.glob(os.path.join(
    os.path.dirname(converter.default_calibration_dir()), "samples",
    "digit_?.png")))


def _top1(stdout):
  """Top-1 label per image from infer's output (image line, then classes)."""
  lines = stdout.splitlines()
  return [lines[i + 1].split()[0] for i, l in enumerate(lines)
          if not l.startswith(" ")]


class InferTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    source = model_source.resolve("bundled")
    cls.source = source
    # The reference: Keras' own MobileNetV2 loading the same weight file.
    ref = keras.applications.MobileNetV2(
        input_shape=(source.input_size, source.input_size, source.channels),
        alpha=source.alpha, weights=None, classes=source.classes)
    ref.load_weights(source.weights_path)
    x = preprocess.load_images(SAMPLES, source.input_size,
                               channels=source.channels)
    cls.want = [source.labels[i] for i in np.argmax(ref.predict(x, verbose=0), 1)]
    cls.dir = absltest.get_default_test_tmpdir()
    cls.models = {}
    for mode in ("int8", "uint8", "float16"):
      conv = converter.convert_source(source, mode, num_calibration=50)
      cls.models[mode] = converter.save(conv, cls.dir)[0]

  def test_top1_matches_float_keras(self):
    self.assertLen(SAMPLES, 5)
    for mode, path in self.models.items():
      with self.subTest(mode):
        args = ["--model", path, "--top_k", "3", "--num_threads", "1"]
        for s in SAMPLES:
          args += ["-i", s]
        r = tools.run_tool(INFER, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(_top1(r.stdout), self.want)

  def test_micro_and_exact_runtimes_give_litert_reference_scores(self):
    # LiteRT's reference kernels compute what TFLM's do, bit for bit, and so
    # does the integer-exact forward.
    ref = runtime.Model(self.models["int8"], reference_kernels=True)
    scores = ref.predict_pixels(ref.load_images(SAMPLES),
                                self.source.normalization)
    for name in ("micro", "exact"):
      with self.subTest(name):
        args = ["--model", self.models["int8"], "--runtime", name, "--top_k",
                "10"]
        for s in SAMPLES:
          args += ["-i", s]
        r = tools.run_tool(INFER, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(_top1(r.stdout), self.want)
        printed = [l.split() for l in r.stdout.splitlines()
                   if l.startswith(" ")]
        for n, row in enumerate(scores):
          got = {int(p[-1].strip("[]")): p[-2]
                 for p in printed[10 * n:10 * n + 10]}
          self.assertEqual(got, {i: f"{v:.4f}" for i, v in enumerate(row)})

  def test_labels_file_with_background_line_is_aligned(self):
    labels = self.create_tempfile(
        content="background\n" + "\n".join(f"digit {n}" for n in
                                           self.source.labels) + "\n")
    r = tools.run_tool(INFER, "--model", self.models["int8"], "--labels",
                    labels.full_path, "-i", SAMPLES[0])
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertEqual(r.stdout.splitlines()[1].split()[:2],
                     ["digit", self.want[0]])

  def test_dump_has_one_file_per_tensor_with_shapes_and_values(self):
    out = self.create_tempdir().full_path
    r = tools.run_tool(INFER, "--model", self.models["int8"], "-i", SAMPLES[0],
                       "-i", SAMPLES[1], "--save_to", out, "--data_format",
                       "channel_first", "--top_k", "10")
    self.assertEqual(r.returncode, 0, r.stderr)
    it = Interpreter(model_path=self.models["int8"])
    details = it.get_tensor_details()
    dirs = sorted(os.listdir(out))
    self.assertEqual(dirs, ["0_digit_0", "1_digit_2"])
    printed = [l.split() for l in r.stdout.splitlines() if l.startswith("  ")
               and "tensors ->" not in l]
    self.assertLen(printed, 10 * len(dirs))
    for n, name in enumerate(dirs):
      d = os.path.join(out, name)
      files = sorted(f for f in os.listdir(d) if f != "tensors.tsv" and
                     not f.endswith(".exact.npy"))
      self.assertLen(files, len(details))
      by_index = {int(f.split("_")[0]): f for f in files}
      for t in details:
        f = by_index[t["index"]]
        if not f.endswith(".npy"):
          continue
        a = np.load(os.path.join(d, f))
        shape = tuple(t["shape"])
        if len(shape) == 4 and a.shape != shape:  # activations are NCHW
          shape = (shape[0], shape[3], shape[1], shape[2])
        self.assertEqual(a.shape, shape, f)
        self.assertEqual(a.dtype, t["dtype"], f)
      # The input dump is the image quantized by hand: Pillow's bilinear
      # resize, x = p / 127.5 - 1, q = round(x / s) + zp, in float64.  This
      # model's s is 1/127.5, so x / s lands on .5 ties, which float32
      # rounding breaks either way: either neighbour, elsewhere exact.
      inp = it.get_input_details()[0]
      scale, zp = inp["quantization"]
      pixels = keras_reference.gray_pixels(SAMPLES[n:n + 1],
                                           self.source.input_size)[0]
      v = (pixels.astype(np.float64) / 127.5 - 1.0) / scale + zp
      got = np.load(os.path.join(d, by_index[inp["index"]]))
      self.assertEqual(got.shape, (1, 1) + v.shape)  # NCHW, 1 channel
      got = got[0, 0].astype(np.float64)
      tie = np.abs(np.abs(v - np.floor(v)) - 0.5) < 1e-4
      np.testing.assert_array_equal(got[~tie],
                                    np.clip(np.round(v), -128, 127)[~tie])
      self.assertTrue(np.all((got[tie] == np.floor(v[tie])) |
                             (got[tie] == np.ceil(v[tie]))))
      # The output dump, dequantized, is what was printed for that image.
      outp = it.get_output_details()[0]
      scores = np.load(os.path.join(d, by_index[outp["index"]]))[0]
      scale, zp = outp["quantization"]
      shown = {int(p[-1].strip("[]")): p[-2]
               for p in printed[10 * n:10 * n + 10]}
      self.assertEqual(shown, {i: f"{(int(q) - zp) * scale:.4f}"
                               for i, q in enumerate(scores)})
    d = os.path.join(out, dirs[0])
    # Beside every computed tensor, the integer-exact forward's value, and
    # tensors.tsv saying how far LiteRT's is from it.
    with open(os.path.join(d, "tensors.tsv"), encoding="utf-8") as f:
      rows = [line.rstrip("\n").split("\t") for line in f][1:]
    computed = [r for r in rows if r[8] != "-"]
    ops = it._get_ops_details()  # pylint: disable=protected-access
    self.assertLen(computed, len(ops) + 1)
    for r in computed:
      ours, theirs = (np.load(os.path.join(d, r[c])) for c in (7, 8))
      self.assertEqual(ours.shape, theirs.shape, r[1])
      self.assertEqual(int(r[9]), int(np.abs(ours.astype(int) -
                                             theirs.astype(int)).max()))
    # Both start from the same quantized input.
    steps = {int(r[0]): r[9] for r in computed}
    self.assertEqual(steps[it.get_input_details()[0]["index"]], "0")

  def test_float16_dump_notes_the_missing_exact_column(self):
    out = self.create_tempdir().full_path
    r = tools.run_tool(INFER, "--model", self.models["float16"], "-i",
                       SAMPLES[0], "--save_to", out)
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertIn("note: no integer-exact column", r.stderr)
    with open(os.path.join(out, "0_digit_0", "tensors.tsv"),
              encoding="utf-8") as f:
      self.assertEqual({line.split("\t")[8] for line in f.readlines()[1:]},
                       {"-"})

  def test_exact_runtime_dump(self):
    out = self.create_tempdir().full_path
    r = tools.run_tool(INFER, "--model", self.models["int8"], "--runtime",
                       "exact", "-i", SAMPLES[0], "--save_to", out)
    self.assertEqual(r.returncode, 0, r.stderr)
    d = os.path.join(out, "0_digit_0")
    ref = runtime.Model(self.models["int8"], reference_kernels=True,
                        preserve_all_tensors=True)
    ref.run_raw(ref.quantize_pixels(ref.load_images(SAMPLES[:1]),
                                    self.source.normalization))
    by_index = {int(f.split("_")[0]): f for f in os.listdir(d)
                if f.endswith(".npy")}
    computed = ref.activation_indices()
    for detail, value in ref.tensors():
      if detail["index"] in computed:
        np.testing.assert_array_equal(
            np.load(os.path.join(d, by_index[detail["index"]])), value)

  def test_bad_input(self):
    d = self.create_tempdir()
    with open(SAMPLES[0], "rb") as f:
      png = f.read()
    with open(self.models["int8"], "rb") as f:
      model = f.read()
    not_image = d.create_file("not_image.png", "just text").full_path
    cut_image = d.create_file("cut.png", png[:len(png) // 2]).full_path
    not_model = d.create_file("m.tflite", "x" * 100).full_path
    cut_model = d.create_file("cut.tflite", model[:len(model) // 3]).full_path
    labels = d.create_file("labels.txt", "a\nb\nc\n").full_path
    blocker = d.create_file("blocker").full_path
    good = ["--model", self.models["int8"], "-i", SAMPLES[0]]
    cases = {
        "missing image": (["--model", self.models["int8"], "-i",
                           os.path.join(d.full_path, "nope.png")], "no such file"),
        "not an image": (["--model", self.models["int8"], "-i", not_image],
                         "not an image"),
        "truncated image": (["--model", self.models["int8"], "-i", cut_image],
                            "not_image|truncated|corrupt|cannot decode"),
        "not a model": (["--model", not_model, "-i", SAMPLES[0]], "TFL3"),
        "truncated model": (["--model", cut_model, "-i", SAMPLES[0]],
                            "truncated|cannot load"),
        "labels count": (good + ["--labels", labels], "3 labels"),
        "save_to": (good + ["--save_to", os.path.join(blocker, "x")],
                    "--save_to"),
        "micro dump": (good + ["--runtime", "micro", "--save_to",
                               d.full_path], "--save_to is for --runtime=litert"),
        "exact float16": (["--model", self.models["float16"], "--runtime",
                           "exact", "-i", SAMPLES[0]], "full-integer"),
        "micro float16": (["--model", self.models["float16"], "--runtime",
                           "micro", "-i", SAMPLES[0]],
                          "TFLite Micro cannot load the model"),
    }
    for what, (args, needle) in cases.items():
      with self.subTest(what):
        r = tools.run_tool(INFER, *args)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("Traceback", r.stderr)
        lines = tools.error_lines(r)
        self.assertLen(lines, 1, r.stderr)
        self.assertRegex(lines[0], needle)
        self.assertEqual(r.stdout, "")


  def test_tflite_micro_missing_is_one_line(self):
    # The same import path without the tflite-micro wheel: as installed
    # from our wheel without `pip install tflite-micro`.
    path = os.pathsep.join(p for p in sys.path if "tflite_micro" not in p)
    r = tools.run_tool(INFER, "--model", self.models["int8"], "--runtime",
                       "micro", "-i", SAMPLES[0], env={"PYTHONPATH": path})
    self.assertNotEqual(r.returncode, 0)
    self.assertNotIn("Traceback", r.stderr)
    self.assertEqual(tools.error_lines(r), [
        "error: TensorFlow Lite Micro is not installed; `pip install "
        "tflite-micro` (Bazel targets get it from the lock)"])
    self.assertEqual(r.stdout, "")


if __name__ == "__main__":
  absltest.main()
