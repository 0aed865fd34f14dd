"""`train --qat`: fine-tuning from an ImageNet-layout alpha-scaled .h5 with
a new head (the case the stock QAT tool refuses), the export's int8 model
from the learned ranges, the BN freeze (--qat_freeze_bn_after_steps), and
bad flags in one line."""

import json
import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from mobilenet.core import arch
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.keras import model as model_lib
from mobilenet.keras import train_lib
from mobilenet.testing import images
from mobilenet.testing import tools
from mobilenet.tflite import runtime


class TrainQatTest(parameterized.TestCase):

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

  def test_bn_freeze_keeps_the_statistics_of_its_step_through_a_resume(self):
    # 3 classes x 8 images, val_split 0.25: 18 training images, batches of
    # 8: 3 steps an epoch.  Frozen after 3 steps: the first epoch trains the
    # statistics, the second (a resumed run: the switch reads the restored
    # step count) keeps them.
    root = self.create_tempdir().full_path
    data = images.make_folder(os.path.join(root, "data"), per_class=8,
                              bad_files=False)
    cfg = train_lib.Config(
        data_dir=data, alpha=0.35, input_size=32, channels=3, epochs=2,
        batch_size=8, val_split=0.25, augment="none", qat=True,
        qat_freeze_bn_after_steps=3, bn_reestimate_batches=2,
        checkpoint_dir=os.path.join(root, "run"), tensorboard=False,
        verbose=0)
    first = train_lib.Trainer(cfg, log=lambda _: None, stop_after_epoch=1)
    self.assertFalse(first.run().finished)
    self.assertEqual(int(first.step.numpy()), 3)
    frozen = model_lib.get_params(first.model)
    kernels = frozen["predictions"]["kernel"]
    lines = []
    second = train_lib.Trainer(cfg, log=lines.append)
    result = second.run()
    self.assertTrue(result.finished)
    self.assertEqual(result.step, 6)
    self.assertFalse(any("re-estimating" in l for l in lines), lines)
    exported = model_source.resolve(result.export_path).params
    moved = 0
    for layer in model_lib.batch_norm_layers(second.model):
      for key, start in (("moving_mean", 0.0), ("moving_variance", 1.0)):
        got = frozen[layer.name][key]
        moved += not np.all(got == start)  # the first epoch moved them
        np.testing.assert_array_equal(exported[layer.name][key], got,
                                      err_msg=f"{layer.name}/{key}")
    self.assertEqual(moved, 2 * 52)
    # The second epoch trained the weights (with frozen statistics).
    self.assertFalse(np.array_equal(exported["predictions"]["kernel"],
                                    kernels))
    self.assertTrue(os.path.exists(os.path.join(root, "run",
                                                "model_int8.tflite")))
    # Training mode now runs the inference fold: the same outputs (the
    # ranges the training call set are the ones inference then uses).
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3))
    y_train = second.model(x, training=True)
    np.testing.assert_array_equal(y_train, second.model(x, training=False))
    after = model_lib.get_params(second.model)
    for layer in model_lib.batch_norm_layers(second.model):
      np.testing.assert_array_equal(after[layer.name]["moving_mean"],
                                    frozen[layer.name]["moving_mean"])

  @parameterized.parameters(
      (["--qat", "--granularity=per_row"], "granularity"),
      (["--qat_freeze_bn_after_steps=5"], "pass --qat"),
      (["--qat", "--qat_freeze_bn_after_steps=-1"], ">= 0"),
      (["--qat", "--qat_freeze_bn_after_steps=5", "--init_weights=bundled"],
       "--fine_tune_bn=train"))
  def test_bad_flags_are_one_error_line(self, flags, what):
    proc = tools.run_tool("mobilenet/keras/train.py", "train",
                          "--data_dir=/nonexistent", *flags, timeout=120)
    self.assertNotEqual(proc.returncode, 0)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], "error: ")
    self.assertIn(what, lines[0])


if __name__ == "__main__":
  absltest.main()
