"""The custom training loop on a tiny generated image folder."""

import json
import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl.testing import absltest
import numpy as np
from PIL import Image

from mobilenet.core import forward
from mobilenet.core import model_source
from mobilenet.core import preprocess
from mobilenet.keras import testdata
from mobilenet.keras import train_lib

PER_CLASS = 24
VAL_SPLIT = 0.25


def _config(data_dir, ckpt, **kw):
  args = dict(data_dir=data_dir, alpha=0.35, input_size=32, channels=3,
              epochs=3, batch_size=12, learning_rate=2e-3, val_split=VAL_SPLIT,
              checkpoint_dir=ckpt, bn_momentum=0.9, bn_reestimate_batches=20,
              verbose=2)
  args.update(kw)
  return train_lib.Config(**args)


class TrainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = testdata.make_folder(
        os.path.join(absltest.get_default_test_tmpdir(), "images"),
        per_class=PER_CLASS)
    # 3 classes x 24 images, 6 per class held out; 2 bad files in class c1.
    cls.train_files = 3 * (PER_CLASS - 6) + 2
    cls.steps = -(-cls.train_files // 12)

  def test_learns_exports_and_reports_both_accuracies(self):
    ckpt = self.create_tempdir().full_path
    lines = []
    result = train_lib.train(_config(self.data, ckpt), log=lines.append)
    self.assertTrue(result.finished)
    self.assertEqual(result.step, 3 * self.steps)
    self.assertEqual(result.skipped_images, 2)
    self.assertTrue(any("2 unreadable image(s) skipped" in l for l in lines))
    h = result.history
    self.assertLen(h, 3)
    self.assertLess(h[-1]["loss"], h[0]["loss"])
    self.assertGreater(result.accuracy, 0.6)  # chance is 1/3
    self.assertTrue(any("after re-estimating" in l for l in lines))
    self.assertIsNotNone(result.accuracy_before_bn_reestimate)

    with Image.open(result.curve_path) as im:
      self.assertEqual(im.format, "PNG")
    # The export, scored by an independent path (core raw-op forward and
    # Pillow decoding) on the whole folder, is well above chance too.
    src = model_source.resolve(result.export_path)
    self.assertEqual(src.labels, ["c0", "c1", "c2"])
    self.assertEqual(src.metadata["val_accuracy"], result.accuracy)
    val_paths, val_labels = [], []
    for c in range(3):
      files = [os.path.join(self.data, f"c{c}", f"{i:03d}.png")
               for i in range(PER_CLASS)]
      val_paths += files
      val_labels += [c] * PER_CLASS
    batch = preprocess.load_images(val_paths, 32, 3)
    probs = forward.forward(src.params, batch, alpha=0.35).numpy()
    acc = np.mean(np.argmax(probs, -1) == np.asarray(val_labels))
    self.assertGreater(acc, 0.6)

  def test_resume_after_signal_loses_no_step(self):
    ckpt = self.create_tempdir().full_path
    cfg = _config(self.data, ckpt, epochs=2, bn_reestimate=False)

    def log(line):
      if line == "epoch 2/2":  # a real SIGTERM, mid-way into epoch 2
        os.kill(os.getpid(), signal.SIGTERM)

    first = train_lib.train(cfg, log=log)
    self.assertFalse(first.finished)
    self.assertEqual(first.step, self.steps + 1)
    with open(os.path.join(ckpt, "run.json")) as f:
      state = json.load(f)
    self.assertEqual((state["epoch"], state["step_in_epoch"]), (1, 1))
    lines = []
    second = train_lib.train(cfg, log=lines.append)
    self.assertIn("resuming", lines[0])
    self.assertTrue(second.finished)
    self.assertEqual(second.step, 2 * self.steps)
    self.assertEqual([e["step"] for e in second.history],
                     [self.steps, 2 * self.steps])
    # A third run finds nothing to do.
    third = train_lib.train(cfg, log=lines.append)
    self.assertEqual(third.step, 2 * self.steps)
    self.assertIn("nothing to do", lines[-1])


class CheckpointRefusalTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = testdata.make_folder(
        os.path.join(absltest.get_default_test_tmpdir(), "images2"),
        per_class=6, bad_files=False)

  def _saved_dir(self):
    ckpt = self.create_tempdir().full_path
    trainer = train_lib.Trainer(_config(self.data, ckpt), log=lambda _: None)
    self.assertFalse(trainer.restore())
    trainer.save()
    return ckpt

  def test_mismatched_flags_refused(self):
    ckpt = self._saved_dir()
    other = train_lib.Trainer(_config(self.data, ckpt, input_size=40),
                              log=lambda _: None)
    with self.assertRaisesRegex(train_lib.TrainError,
                                "input_size=32.*input_size=40"):
      other.restore()

  def test_corrupt_checkpoint_refused(self):
    ckpt = self._saved_dir()
    data_file = [f for f in os.listdir(ckpt) if ".data-" in f][0]
    with open(os.path.join(ckpt, data_file), "r+b") as f:
      f.truncate(100)
    trainer = train_lib.Trainer(_config(self.data, ckpt), log=lambda _: None)
    with self.assertRaisesRegex(train_lib.TrainError, "cannot restore"):
      trainer.restore()
    with open(os.path.join(ckpt, "run.json"), "w") as f:
      f.write("{not json")
    with self.assertRaisesRegex(train_lib.TrainError, "corrupt"):
      trainer.restore()

  def test_bad_config(self):
    ckpt = self.create_tempdir().full_path
    for kw, msg in ((dict(alpha=-1), "alpha"), (dict(input_size=16), ">= 32"),
                    (dict(classes=5), "--classes=5"),
                    (dict(channels=2), "channels")):
      with self.assertRaisesRegex(train_lib.TrainError, msg):
        train_lib.Trainer(_config(self.data, ckpt, **kw))


if __name__ == "__main__":
  absltest.main()
