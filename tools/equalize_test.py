"""equalize run as a user runs it: an equalized checkpoint every tool reads,
the same float outputs on the calibration images, bad input in one line."""

import json
import os

import numpy as np
from absl.testing import absltest

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.testing import tools
from mobilenet.tflite import converter

TOOL = "tools/equalize.py"


class EqualizeToolTest(absltest.TestCase):

  def test_writes_a_checkpoint_with_the_same_float_outputs(self):
    out = os.path.join(self.create_tempdir().full_path, "eq", "model.h5")
    r = tools.run_tool(TOOL, "--weights=bundled", f"--output={out}",
                       "--num_calibration=20")
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertIn("| block_1_depthwise |", r.stdout)
    self.assertCountEqual(os.listdir(os.path.dirname(out)),
                          ["model.h5", "model.json"])
    with open(os.path.join(os.path.dirname(out), "model.json")) as f:
      meta = json.load(f)
    self.assertEqual(meta["equalization"]["calibration_images"], 20)
    self.assertLen(meta["equalization"]["layers"], 17)
    bundled = model_source.resolve("bundled")
    eq = model_source.resolve(out)
    self.assertEqual((eq.alpha, eq.input_size, eq.channels, eq.labels),
                     (bundled.alpha, bundled.input_size, bundled.channels,
                      bundled.labels))
    images = converter.representative_batch(
        converter.calibration_set(None, 20), bundled.input_size,
        bundled.channels, "tf")
    want = forward.apply(bundled.params, images, alpha=bundled.alpha).numpy()
    got = forward.apply(eq.params, images, alpha=eq.alpha).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    changed = [k for k in bundled.params
               if any(not np.array_equal(bundled.params[k][w], eq.params[k][w])
                      for w in bundled.params[k])]
    self.assertTrue(changed and all("depthwise" in k or "BN" in k.upper()
                                    for k in changed), changed)

  def test_from_an_imagenet_layout_file(self):
    """The users' usual start: an alpha 1.0, 1000-class Keras .h5 with the
    official file name (input size read from it, ImageNet names assumed
    and said)."""
    d = self.create_tempdir().full_path
    net = arch.derive(1.0, 3, 1000)
    src = os.path.join(
        d, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5")
    params_lib.save_h5(params_lib.init(net, seed=1), src, net)
    out = os.path.join(d, "eq", "model.h5")
    r = tools.run_tool(TOOL, f"--weights={src}", f"--output={out}",
                       "--num_calibration=8")
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertIn("note: labels: the ImageNet names", r.stderr)
    eq = model_source.resolve(out)
    self.assertEqual((eq.alpha, eq.input_size, eq.channels, eq.classes),
                     (1.0, 224, 3, 1000))
    before = model_source.resolve(src)
    images = converter.representative_batch(
        converter.calibration_set(None, 8), 224, 3, "tf")
    np.testing.assert_allclose(
        forward.apply(eq.params, images).numpy(),
        forward.apply(before.params, images).numpy(), rtol=0, atol=1e-5)

  def test_bad_input_is_one_line_and_writes_nothing(self):
    d = self.create_tempdir()
    empty = d.mkdir("empty").full_path
    cases = {
        "not_h5": (["--output", os.path.join(d.full_path, "o1", "m")],
                   "name the .h5 file"),
        "calibration": (["--calibration_dir", empty,
                         "--output", os.path.join(d.full_path, "o2", "m.h5")],
                        "no image files"),
        "weights": (["--weights", os.path.join(empty, "w.h5"),
                     "--output", os.path.join(d.full_path, "o3", "m.h5")],
                    "no such file"),
    }
    for what, (args, needle) in cases.items():
      with self.subTest(what):
        r = tools.run_tool(TOOL, *args)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("Traceback", r.stderr)
        lines = tools.error_lines(r)
        self.assertLen(lines, 1, r.stderr)
        self.assertIn(needle, lines[0])
        self.assertFalse(os.path.exists(os.path.dirname(args[-1])))


if __name__ == "__main__":
  absltest.main()
