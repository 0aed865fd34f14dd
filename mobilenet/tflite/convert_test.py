"""convert CLI as a user runs it: outputs, determinism, bad input."""

import hashlib
import json
import os

from absl.testing import absltest

from mobilenet.core import arch
from mobilenet.core import params as params_lib
from mobilenet.testing import tools
from mobilenet.tflite import runtime

CONVERT = "mobilenet/tflite/convert.py"


def _sha(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


class ConvertCliTest(absltest.TestCase):

  def test_two_runs_write_identical_files(self):
    outs = []
    for _ in range(2):
      out = self.create_tempdir().full_path
      r = tools.run_tool(CONVERT, "--save_to", out, "--weights", "random",
                      "--alpha", "0.35", "--input_size", "32",
                      "--quantize", "uint8", "--num_calibration", "10")
      self.assertEqual(r.returncode, 0, r.stderr)
      self.assertIn("ops", r.stdout)
      self.assertIn("uint8 [1, 32, 32, 3]", r.stdout)
      outs.append(out)
    names = sorted(os.listdir(outs[0]))
    self.assertEqual(names, ["mobilenet_v2_random_a035_32x32x3_uint8.json",
                             "mobilenet_v2_random_a035_32x32x3_uint8.tflite"])
    for n in names:
      self.assertEqual(_sha(os.path.join(outs[0], n)),
                       _sha(os.path.join(outs[1], n)))
    tfl = os.path.join(outs[0], names[1])
    m = runtime.Model(tfl)
    with open(os.path.join(outs[0], names[0])) as f:
      meta = json.load(f)
    self.assertEqual(meta["tflite_sha256"], _sha(tfl))
    self.assertEqual(meta["input"]["dtype"], m.input_dtype.name)

  def test_bad_input_is_one_line_no_traceback_no_output(self):
    d = self.create_tempdir()
    blocker = d.create_file("file").full_path
    empty = d.mkdir("empty").full_path
    cases = {
        "alpha": (["--alpha", "0"], "--alpha"),
        "size": (["--input_size", "16"], "--input_size"),
        "save_to": (["--save_to", os.path.join(blocker, "x")], "--save_to"),
        "calibration": (["--calibration_dir", empty], "no image files"),
        "weights": (["--weights", os.path.join(empty, "w.h5")], "no such file"),
        "num_calibration": (["--num_calibration", "101"],
                            "--num_calibration=101 but"),
        "granularity_float16": (["--quantize", "float16", "--granularity",
                                 "per_tensor"],
                                "--granularity=per_tensor is for full-integer"
                                " models (--quantize int8 or uint8), not "
                                "--quantize float16"),
        "granularity_dynamic": (["--quantize", "dynamic", "--granularity",
                                 "per_tensor"], "not --quantize dynamic"),
        "equalize_float16": (["--quantize", "float16", "--equalize"],
                             "--equalize rescales weights for calibrated "
                             "int8/uint8 conversion; not --quantize=float16"),
    }
    for what, (args, needle) in cases.items():
      with self.subTest(what):
        out = os.path.join(d.full_path, "out_" + what, "nested")
        argv = ["--save_to", out, "--weights", "random", "--alpha", "0.35",
                "--input_size", "32"] + args
        r = tools.run_tool(CONVERT, *argv)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("Traceback", r.stderr)
        lines = tools.error_lines(r)
        self.assertLen(lines, 1, r.stderr)
        self.assertIn(needle, lines[0])
        # No output directory before there is something to put in it.
        self.assertFalse(os.path.exists(os.path.dirname(out)))

  def test_per_tensor_sits_beside_per_channel(self):
    out = self.create_tempdir().full_path
    stem = "mobilenet_v2_random_a035_32x32x3_int8"
    summaries = {}
    for granularity, extra in (("per_channel", ()), ("per_tensor", ()),
                               ("equalized", ("--equalize",))):
      r = tools.run_tool(CONVERT, "--save_to", out, "--weights", "random",
                         "--alpha", "0.35", "--input_size", "32",
                         "--granularity", granularity.replace(
                             "equalized", "per_tensor"),
                         "--num_calibration", "10", *extra)
      self.assertEqual(r.returncode, 0, r.stderr)
      summaries[granularity] = r.stdout
    self.assertEqual(sorted(os.listdir(out)), sorted(
        stem + s + e for s in ("", "_per_tensor", "_per_tensor_equalized")
        for e in (".json", ".tflite")))
    self.assertIn("equalized     17 depthwise convs", summaries["equalized"])
    # Equalized, no depthwise weight scale is larger than without.
    dw_scales = []
    for suffix in ("_per_tensor", "_per_tensor_equalized"):
      model = runtime.Model(os.path.join(out, stem + suffix + ".tflite"),
                            use_default_delegates=False)
      interp = model.interpreter
      dw_scales.append([
          interp._get_tensor_details(op["inputs"][1], 0)[  # pylint: disable=protected-access
              "quantization_parameters"]["scales"][0]
          for op in interp._get_ops_details()  # pylint: disable=protected-access
          if op["op_name"] == "DEPTHWISE_CONV_2D"])
    self.assertLen(dw_scales[1], 17)
    for i, (plain, equalized) in enumerate(zip(*dw_scales)):
      self.assertLessEqual(equalized, plain * (1 + 1e-6), i)
    self.assertIn("weights: int8 per-tensor, --granularity=per_tensor",
                  summaries["per_tensor"])
    self.assertIn("weights: int8 per-channel, --granularity=per_channel",
                  summaries["per_channel"])
    for suffix, granularity, most in (("", "per_channel", 1280),
                                      ("_per_tensor", "per_tensor", 1)):
      path = os.path.join(out, stem + suffix)
      with open(path + ".json") as f:
        self.assertEqual(json.load(f)["granularity"], granularity)
      # LiteRT's reading: the widest layer has 1280 scales per-channel;
      # per-tensor no tensor has more than one.  Without XNNPACK: once
      # allocated, it reports the per-tensor FULLY_CONNECTED weights with
      # their one scale repeated per output channel (the file has one).
      model = runtime.Model(path + ".tflite", use_default_delegates=False)
      scales = [len(d["quantization_parameters"]["scales"])
                for d in model.interpreter.get_tensor_details()]
      self.assertEqual(max(scales), most)

  def test_a_file_named_imagenet_is_not_called_imagenet(self):
    d = self.create_tempdir().full_path
    net = arch.derive(0.35, 3, 1000)
    weights = os.path.join(d, "mnv2_imagenet.h5")
    params_lib.save_h5(params_lib.init(net, seed=1), weights, net)
    out = os.path.join(d, "out")
    r = tools.run_tool(CONVERT, "--save_to", out, "--weights", weights,
                    "--input_size", "32", "--quantize", "float")
    self.assertEqual(r.returncode, 0, r.stderr)
    stem = "mobilenet_v2_file-mnv2_imagenet_a035_32x32x3_float"
    self.assertEqual(sorted(os.listdir(out)), [stem + ".json",
                                               stem + ".tflite"])
    with open(os.path.join(out, stem + ".json")) as f:
      meta = json.load(f)
    self.assertEqual(meta["weights"]["kind"], "keras_file")
    # What was assumed (the names of 1000 outputs) is said, once.
    notes = [l for l in r.stderr.splitlines() if l.startswith("note:")]
    self.assertEqual(notes, ["note: labels: the ImageNet names (assumed for "
                             "1000 outputs; pass --labels FILE)"])


if __name__ == "__main__":
  absltest.main()
