"""`train --qat`: fine-tuning from an ImageNet-layout alpha-scaled .h5 with
a new head (the case the stock QAT tool refuses), the export's int8 model
from the learned ranges, and bad flags in one line."""

import json
import os

from absl.testing import absltest
import numpy as np

from mobilenet.core import arch
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.testing import images
from mobilenet.testing import tools
from mobilenet.tflite import runtime


class TrainQatTest(absltest.TestCase):

  def test_qat_fine_tunes_an_imagenet_layout_file_and_exports_int8(self):
    root = self.create_tempdir().full_path
    net = arch.derive(0.35, 3, 1001)
    start = params_lib.init(net, seed=1)
    h5 = os.path.join(root, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_"
                      "0.35_96.h5")  # the official file's name and layout
    params_lib.save_h5(start, h5, net)
    train = images.make_folder(os.path.join(root, "train"), per_class=6,
                               bad_files=False)
    val = images.make_folder(os.path.join(root, "val"), per_class=2, seed=1,
                             bad_files=False)
    ckpt = os.path.join(root, "run")
    proc = tools.run_tool(
        "mobilenet/keras/train.py", "train", f"--data_dir={train}",
        f"--val_dir={val}", f"--init_weights={h5}", "--input_size=32",
        "--epochs=1", "--batch_size=6", "--augment=none", "--qat",
        "--granularity=per_tensor", "--bn_reestimate_batches=2",
        f"--checkpoint_dir={ckpt}", timeout=900)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("fresh 3-class head", proc.stdout)
    with open(os.path.join(ckpt, "model.json"), encoding="utf8") as f:
      meta = json.load(f)
    ranges = meta["qat"]["ranges"]
    self.assertEqual(meta["qat"]["granularity"], "per_tensor")
    self.assertTrue(all(hi > lo for lo, hi in ranges.values()))
    got = model_source.resolve(os.path.join(ckpt, "model.h5")).params
    self.assertEqual(got["predictions"]["kernel"].shape, (1280, 3))
    self.assertFalse(np.array_equal(got["Conv1"]["kernel"],
                                    start["Conv1"]["kernel"]))
    with open(os.path.join(ckpt, "model_int8.json"), encoding="utf8") as f:
      tmeta = json.load(f)
    self.assertTrue(tmeta["qat"]["qat"])
    self.assertEqual(tmeta["weights_quantization"], "int8 per-tensor")
    self.assertIsNone(tmeta["calibration"])
    model = runtime.Model(os.path.join(ckpt, "model_int8.tflite"),
                          use_default_delegates=False)
    detail = model.interpreter.get_input_details()[0]
    self.assertEqual(detail["dtype"], np.int8)
    lo, hi = ranges["input"]
    scale, zero = detail["quantization"]
    self.assertAlmostEqual(scale, (hi - lo) / 255.0, delta=scale * 1e-6)
    self.assertEqual(zero, round(-lo * 255.0 / (hi - lo)) - 128)

  def test_bad_granularity_is_one_error_line(self):
    proc = tools.run_tool("mobilenet/keras/train.py", "train",
                          "--data_dir=/nonexistent", "--qat",
                          "--granularity=per_row", timeout=120)
    self.assertNotEqual(proc.returncode, 0)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], "error: ")
    self.assertIn("granularity", lines[0])


if __name__ == "__main__":
  absltest.main()
