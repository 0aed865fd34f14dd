"""The weights decide the architecture of a fine-tune: train's --alpha,
--input_size and --channels left out come from --init_weights, a default
never overrides them, and a set flag the weights contradict is one line
naming the weights' value."""

import json
import os

from absl.testing import absltest
import numpy as np

from mobilenet.core import arch
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.keras import init_source
from mobilenet.keras import train_config
from mobilenet.testing import images
from mobilenet.testing import tools

OFFICIAL = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{}_{}.h5"


def _weights_file(directory, name, alpha=1.0, classes=1001, channels=3):
  """A Keras-layout weight file with seeded random weights, as an ImageNet
  file is laid out (no sidecar); returns (path, params)."""
  net = arch.derive(alpha, channels, classes)
  params = params_lib.init(net, seed=1)
  path = os.path.join(directory, name)
  params_lib.save_h5(params, path, net)
  return path, params


def _resolve(**kw):
  return init_source.resolve(train_config.Config(**kw))


class ResolveTest(absltest.TestCase):

  def test_a_keras_file_sets_what_the_flags_leave_out(self):
    path, _ = _weights_file(self.create_tempdir().full_path,
                            "imagenet_1001.h5")
    cfg, source, notes = _resolve(init_weights=path)
    self.assertEqual((cfg.alpha, cfg.input_size, cfg.channels),
                     (1.0, 224, 3))
    self.assertEqual(source.classes, 1001)
    # The size is nowhere in the file: assumed, and said.
    self.assertEqual(notes, ["input size 224 (assumed; pass --input_size)"])
    cfg, _, notes = _resolve(init_weights=path, input_size=40, channels=1)
    self.assertEqual((cfg.alpha, cfg.input_size, cfg.channels), (1.0, 40, 1))
    self.assertEqual(notes, [])

  def test_the_official_name_and_our_sidecar_give_the_size(self):
    d = self.create_tempdir().full_path
    path, _ = _weights_file(d, OFFICIAL.format("0.35", 96), alpha=0.35,
                            classes=1000)
    cfg, _, notes = _resolve(init_weights=path)
    self.assertEqual((cfg.alpha, cfg.input_size, cfg.channels, notes),
                     (0.35, 96, 3, []))
    cfg, source, notes = _resolve(init_weights="bundled")
    meta = source.metadata
    self.assertEqual((cfg.alpha, cfg.input_size, cfg.channels, notes),
                     (meta["alpha"], meta["input_size"], meta["channels"], []))

  def test_without_init_weights_the_train_defaults(self):
    cfg, source, notes = _resolve()
    self.assertEqual((cfg.alpha, cfg.input_size, cfg.channels, source, notes),
                     (0.35, 64, 3, None, []))
    cfg, _, _ = _resolve(alpha=0.5, channels=1)
    self.assertEqual((cfg.alpha, cfg.input_size, cfg.channels), (0.5, 64, 1))

  def test_a_contradicting_alpha_names_the_weights_alpha(self):
    path, _ = _weights_file(self.create_tempdir().full_path,
                            "imagenet_1001.h5")
    with self.assertRaisesRegex(
        train_config.TrainError, r"^--init_weights: .*imagenet_1001.h5 holds "
        r"alpha=1.0 weights, but alpha=0.35 was requested; drop --alpha or "
        r"pass --alpha=1.0\.$"):
      _resolve(init_weights=path, alpha=0.35)
    with self.assertRaisesRegex(train_config.TrainError,
                                "alpha=0.35 model, but alpha=1.0"):
      _resolve(init_weights="bundled", alpha=1.0)


class FineTuneCommandTest(absltest.TestCase):
  """The issue's command, at 32 px on a handful of images."""

  def test_trains_from_an_alpha_1_file_without_alpha(self):
    root = self.create_tempdir().full_path
    path, want = _weights_file(root, "imagenet_1001.h5")
    train = images.make_folder(os.path.join(root, "train"), per_class=4,
                               bad_files=False)
    val = images.make_folder(os.path.join(root, "val"), per_class=2, seed=1,
                             bad_files=False)
    ckpt = os.path.join(root, "ft")
    common = ["train", f"--data_dir={train}", f"--val_dir={val}",
              f"--init_weights={path}", "--input_size=32", "--epochs=1",
              "--head_epochs=1", "--batch_size=8", f"--checkpoint_dir={ckpt}"]
    proc = tools.run_tool("mobilenet/keras/train.py", *common, timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("MobileNetV2 alpha=1.0 at 32x32x3; fresh 3-class head "
                  "(weights have 1001 classes)", proc.stdout)
    with open(os.path.join(ckpt, "model.json")) as f:
      self.assertEqual(json.load(f)["alpha"], 1.0)
    # The head phase froze the backbone: the export holds the file's own
    # weights everywhere but the new head.
    got = model_source.resolve(os.path.join(ckpt, "model.h5")).params
    self.assertEqual(got["predictions"]["kernel"].shape, (1280, 3))
    for layer in want:
      if layer != "predictions":
        for key, value in want[layer].items():
          np.testing.assert_array_equal(got[layer][key], value,
                                        err_msg=f"{layer}/{key}")

    proc = tools.run_tool("mobilenet/keras/train.py", *common,
                          "--alpha=0.35", timeout=300)
    self.assertEqual(proc.returncode, 1)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], "error: --init_weights: ")
    self.assertIn("holds alpha=1.0 weights, but alpha=0.35", lines[0])


if __name__ == "__main__":
  absltest.main()
