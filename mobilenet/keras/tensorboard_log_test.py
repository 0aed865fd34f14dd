"""tensorboard_log: who writes, what a file holds (read back with
TensorFlow's summary iterator), and the cut back to a checkpoint that keeps
a resumed run's curves free of duplicate or lost-segment steps.  (The
trainer's events against run.json: train_lib_test and
train_multiworker_test.)"""

import glob
import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from mobilenet.keras import multiworker
from mobilenet.keras import recipe
from mobilenet.keras import tensorboard_log
from mobilenet.keras import train_config


def _entry(epoch, base):
  return {"epoch": epoch, "step": 4 * epoch, "loss": base + 0.1,
          "accuracy": base + 0.2, "val_loss": base + 0.3,
          "val_accuracy": base + 0.4, "seconds": base + 0.5,
          "images_per_second": base + 0.6}


def _write(root, steps, epochs, base, final_at=None):
  """Events of a run segment: step/ tags for `steps`, epoch tags and one
  input image for `epochs`; values offset by `base`."""
  log = tensorboard_log.Log(root, 1, lambda s: base + s / 1000)
  for s in steps:
    log.step(s, np.array([2.0 * (base + s), 0.0, 2.0]))
  for e in epochs:
    log.inputs(e, tf.zeros([4, 8, 8, 1]) + 0.5)
    log.epoch(_entry(e, base), "note")
  if final_at:
    log.final(final_at, base + 0.7, base + 0.8, "export")
  log.close()


class WriterTest(absltest.TestCase):

  def test_only_the_chief_writes_and_only_when_asked(self):
    on = train_config.Config(tensorboard=True)
    off = train_config.Config(tensorboard=False)
    chief, other = multiworker.Worker(0, 2, True), multiworker.Worker(1, 2,
                                                                     False)
    self.assertTrue(tensorboard_log.enabled(on, chief))
    self.assertTrue(tensorboard_log.enabled(on, multiworker.Worker()))
    self.assertFalse(tensorboard_log.enabled(on, other))
    self.assertFalse(tensorboard_log.enabled(off, chief))

  def test_events_read_back_with_tags_steps_and_values(self):
    root = self.create_tempdir().full_path
    _write(root, steps=range(1, 9), epochs=(1, 2), base=1.0, final_at=2)
    got = tensorboard_log.read(root)
    f32 = lambda v: float(np.float32(v))  # pylint: disable=unnecessary-lambda-assignment
    self.assertEqual(got["train"]["step/loss"],
                     {s: f32(1.0 + s) for s in range(1, 9)})
    self.assertEqual(got["train"]["step/learning_rate"],
                     {s: f32(1.0 + s / 1000) for s in range(1, 9)})
    self.assertEqual(got["train"]["epoch/inputs"], {1: 3, 2: 3})
    for e in (1, 2):
      want = _entry(e, 1.0)
      for k in ("loss", "accuracy", "seconds", "images_per_second"):
        self.assertEqual(got["train"]["epoch/" + k][e], f32(want[k]))
      self.assertEqual(got["validation"]["epoch/loss"][e],
                       f32(want["val_loss"]))
      self.assertEqual(got["validation"]["epoch/accuracy"][e],
                       f32(want["val_accuracy"]))
    self.assertEqual(got["validation"]["final/accuracy"], {2: f32(1.8)})
    # TensorBoard's image plugin format: width, height, PNGs.
    (path,) = glob.glob(os.path.join(root, "train", "*tfevents*"))
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == "epoch/inputs":
          self.assertEqual(v.metadata.plugin_data.plugin_name, "images")
          data = tf.make_ndarray(v.tensor)
          self.assertEqual(data[:2].tolist(), [b"8", b"8"])
          image = tf.io.decode_png(data[2]).numpy()
          self.assertEqual(image.shape, (8, 8, 1))
          self.assertTrue(np.all(image == 191))  # 0.5 in [-1, 1]

  def test_learning_rate_of_a_step(self):
    # A constant rate is a variable, under tf.distribute a MirroredVariable
    # (what --strategy=multiworker's chief reads); a schedule is called at
    # the optimizer's iteration count before the step.
    import keras  # pylint: disable=g-import-not-at-top
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
      constant = keras.optimizers.SGD(0.25)
      constant.build([tf.Variable(1.0)])
    self.assertEqual(recipe.rate_of_step(constant, 7), 0.25)
    cfg = train_config.Config(learning_rate=0.5, warmup_epochs=1.0,
                              lr_schedule="constant")
    scheduled = recipe.make_optimizer(cfg, steps_per_epoch=4)
    self.assertEqual([recipe.rate_of_step(scheduled, s) for s in (1, 4)],
                     [0.5 / 4, 0.5])  # linear warmup over 4 steps

  def test_every_n_steps(self):
    root = self.create_tempdir().full_path
    log = tensorboard_log.Log(root, 3, lambda s: 0.1)
    for s in range(1, 11):
      log.step(s, np.array([1.0, 0.0, 1.0]))
    log.close()
    self.assertEqual(sorted(tensorboard_log.read(root)["train"]["step/loss"]),
                     [3, 6, 9])

  def test_resume_cuts_the_lost_segment_then_continues_without_duplicates(
      self):
    root = self.create_tempdir().full_path
    # A run that got to step 10 and epoch 2 (the end of the run, final
    # numbers included) but was killed with its checkpoint at step 6, one
    # epoch finished; its last record half-written.
    _write(root, steps=range(1, 11), epochs=(1, 2), base=1.0, final_at=2)
    (path,) = glob.glob(os.path.join(root, "validation", "*tfevents*"))
    with open(path, "ab") as f:  # a record header, then 10 of 100 bytes
      f.write((100).to_bytes(8, "little") + bytes(4 + 10))
    dropped = tensorboard_log.cut_back(root, step=6, epoch=1,
                                       finalized=False)
    # steps 7-10 x 2 tags; epoch 2: 5 train tags, 2 validation; 2 final;
    # the torn record.
    self.assertEqual(dropped, 8 + 5 + 2 + 2 + 1)
    self.assertEqual(glob.glob(os.path.join(root, "*", "*.tmp")), [])
    # The resumed run recomputes steps 7-10 and epoch 2 (other values).
    _write(root, steps=range(7, 11), epochs=(2,), base=5.0, final_at=2)
    got = tensorboard_log.read(root)  # raises on a duplicate step
    self.assertEqual(got["train"]["step/loss"],
                     {s: float(np.float32((1.0 if s <= 6 else 5.0) + s))
                      for s in range(1, 11)})
    self.assertEqual(got["validation"]["epoch/accuracy"],
                     {1: float(np.float32(1.4)), 2: float(np.float32(5.4))})
    self.assertEqual(got["validation"]["final/accuracy"],
                     {2: float(np.float32(5.8))})

  def test_finished_run_keeps_its_final_numbers(self):
    root = self.create_tempdir().full_path
    _write(root, steps=range(1, 5), epochs=(1,), base=1.0, final_at=1)
    self.assertEqual(tensorboard_log.cut_back(root, 4, 1, finalized=True), 0)
    self.assertEqual(tensorboard_log.cut_back(root, 4, 1, finalized=False), 2)


if __name__ == "__main__":
  absltest.main()
