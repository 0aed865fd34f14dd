"""The custom training loop on a tiny generated image folder."""

import json
import os
import signal
import tempfile

from absl.testing import absltest
import keras
import numpy as np
from PIL import Image
import tensorflow as tf

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import model_source
from mobilenet.core import params as params_lib
from mobilenet.core import preprocess
from mobilenet.keras import model as model_lib
from mobilenet.testing import events
from mobilenet.testing import images
from mobilenet.keras import train_lib

PER_CLASS = 24
VAL_SPLIT = 0.25
# One SGD step, the trainer vs keras.applications: |trained update - Keras
# update| / |Keras update|.  Measured (oneDNN off / on): 0.13 % / 0.063 %
# over all trainable variables together, 0.30 % / 0.24 % for the worst one;
# moving statistics max |diff| 1.8e-6.  The margins are wide because the
# rounding noise can jump: one ReLU6 input within rounding of 0 switching
# side changes an element's gradient outright (in train_mirrored_test's
# half-batch sums that gives 2-5 %).  A defect in the step -- loss scaled
# by another count, other momentum, other BN statistics -- moves the update
# by tens of percent.
UPDATE_RTOL_ALL = 0.05
UPDATE_RTOL_EACH = 0.25
STATS_ATOL = 2e-5


def _readable(split):
  """(paths, labels) of the files of `split` that Pillow decodes."""
  paths, labels = [], []
  for path, label in zip(split.paths, split.labels):
    try:
      preprocess.load_image(path)
    except preprocess.ImageError:
      continue
    paths.append(path)
    labels.append(label)
  return paths, np.asarray(labels)


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
    cls.data = images.make_folder(
        tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()),
        per_class=PER_CLASS)
    # 3 classes x 24 images, 6 per class held out; 2 bad files in class c1.
    cls.train_files = 3 * (PER_CLASS - 6) + 2
    cls.steps = -(-cls.train_files // 12)

  def test_trains_exports_and_reports_both_accuracies(self):
    ckpt = self.create_tempdir().full_path
    lines = []
    cfg = _config(self.data, ckpt)
    result = train_lib.train(cfg, log=lines.append)
    self.assertTrue(result.finished)
    self.assertEqual(result.step, 3 * self.steps)
    self.assertEqual(result.skipped_images, 2)
    self.assertTrue(any("2 unreadable image(s) skipped" in l for l in lines))
    h = result.history
    self.assertEqual([e["step"] for e in h],
                     [self.steps, 2 * self.steps, 3 * self.steps])
    for e in h:
      self.assertTrue(all(np.isfinite(e[k]) for k in ("loss", "val_loss")), e)
    self.assertTrue(any("after re-estimating" in l for l in lines))
    self.assertIsNotNone(result.accuracy_before_bn_reestimate)

    with Image.open(result.curve_path) as im:
      self.assertEqual(im.format, "PNG")
    src = model_source.resolve(result.export_path)
    self.assertEqual(src.labels, ["c0", "c1", "c2"])
    self.assertEqual(src.metadata["val_accuracy"], result.accuracy)

    # The reported accuracy is the export's on exactly the validation files,
    # scored by an independent path: Pillow decoding (core preprocess) and
    # the core raw-op forward pass.  The validation split: 6 per class, none
    # of them a training file; unreadable ones are not scored.
    train_split, val_split, _ = train_lib.scan(cfg)
    self.assertEqual(np.bincount(val_split.labels).tolist(), [6, 6, 6])
    self.assertFalse(set(val_split.paths) & set(train_split.paths))
    self.assertLen(train_split, self.train_files)
    paths, labels = _readable(val_split)
    batch = preprocess.load_images(paths, 32, 3)
    logits = forward.forward(src.params, batch, alpha=0.35,
                             classifier_activation=None).numpy()
    correct = int(np.sum(np.argmax(logits, -1) == labels))
    reported = result.accuracy * len(labels)
    self.assertAlmostEqual(reported, round(reported), places=6)
    # The trainer's Keras model and the core forward run the same kernels
    # but not one graph (padding shortcut, op order): logits agree to
    # ~1e-5, so an image can only be scored differently if its top two
    # logits are that close.  Allowed: at most one image, and only if there
    # is such a near tie.
    top2 = np.sort(logits, -1)[:, -2:]
    near_ties = int(np.sum(top2[:, 1] - top2[:, 0] < 1e-3))
    self.assertLessEqual(abs(round(reported) - correct), min(1, near_ties),
                         f"reported {round(reported)}/{len(labels)}, "
                         f"independently {correct}; near ties {near_ties}")
    # The last epoch validated the model as it is exported (BN statistics
    # re-estimated over the same batches), so its loss is the export's mean
    # cross-entropy on those files.
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    val_loss = -np.mean(log_probs[np.arange(len(labels)), labels])
    self.assertAlmostEqual(h[-1]["val_loss"], val_loss, delta=1e-4)
    self.assertEqual(h[-1]["val_accuracy"], result.accuracy)

  def test_one_step_equals_keras_applications_step(self):
    """One SGD step of the Trainer = one step computed independently:
    keras.applications.MobileNetV2 with the same weights, the same images
    (decoded by core preprocess), sparse cross-entropy on logits, a
    GradientTape and Keras' SGD."""
    lr = 1e-3
    # The plain step: no augmentation (the reference reads the files as
    # they are), constant learning rate, no warmup.
    cfg = _config(self.data, self.create_tempdir().full_path, epochs=1,
                  optimizer="sgd", learning_rate=lr, lr_schedule="constant",
                  warmup_epochs=0.0, augment="none", bn_reestimate=False,
                  verbose=0)
    paths, y = _readable(train_lib.scan(cfg)[0])
    n = len(paths)  # one batch of every readable training image
    self.assertGreater(n, 50)
    cfg.batch_size = n
    trainer = train_lib.Trainer(cfg, log=lambda _: None)
    initial = model_lib.get_params(trainer.model)
    result = trainer.run()
    self.assertEqual(result.step, 1)
    trained = model_source.resolve(result.export_path).params

    ref = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=3,
        classifier_activation=None)
    for layer in ref.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = cfg.bn_momentum  # Keras builds them with 0.999
    for name, p in initial.items():
      layer = ref.get_layer(name)
      keys = [w.path.split("/")[-1] for w in layer.weights]
      keys = ["depthwise_kernel" if k == "kernel" and "depthwise_kernel" in p
              else k for k in keys]
      layer.set_weights([p[k] for k in keys])
    x = preprocess.load_images(paths, 32, 3)
    optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
      loss = loss_fn(y, ref(x, training=True))
    grads = tape.gradient(loss, ref.trainable_variables)
    optimizer.apply_gradients(zip(grads, ref.trainable_variables))
    want = params_lib.from_keras_model(ref, arch.derive(0.35, 3, 3))

    # The step's loss: the initial weights' mean cross-entropy.
    self.assertAlmostEqual(result.history[0]["loss"], float(loss),
                           delta=1e-5 * float(loss))
    # Weights.  The trainer's batch is in its shuffled order, the
    # reference's in file order: the same sums in another order, i.e.
    # float32 rounding, which this freshly initialized 52-BN network
    # amplifies (see UPDATE_RTOL_ALL).
    diff2 = update2 = worst = stats_diff = 0.0
    for name, p in want.items():
      for key, b in p.items():
        a, b0 = trained[name][key], initial[name][key]
        if key.startswith("moving_"):
          # 0.9 * initial + 0.1 * batch statistics of the initial weights:
          # a forward pass, rounding only.
          np.testing.assert_allclose(a, b, rtol=1e-5, atol=STATS_ATOL,
                                     err_msg=f"{name}/{key}")
          stats_diff = max(stats_diff, float(np.abs(a - b).max()))
          continue
        diff, update = np.linalg.norm(a - b), np.linalg.norm(b - b0)
        self.assertLessEqual(
            diff, UPDATE_RTOL_EACH * update + 1e-6 * np.sqrt(b.size),
            f"{name}/{key}: |ours - Keras| {diff:.3g}, update {update:.3g}")
        diff2, update2 = diff2 + diff**2, update2 + update**2
        if update > 1e-4:
          worst = max(worst, diff / update)
    ratio = np.sqrt(diff2 / update2)
    print(f"trainer vs keras.applications, one SGD step: |difference| / "
          f"|update| = {ratio:.3g} (all), {worst:.3g} (worst variable); "
          f"moving statistics max |difference| {stats_diff:.3g}")
    self.assertLessEqual(ratio, UPDATE_RTOL_ALL)
    moved = max(np.abs(trained[l][k] - initial[l][k]).max()
                for l in initial for k in initial[l] if k.startswith("mov"))
    self.assertGreater(moved, 0.05)  # the moving statistics did move

  def test_resume_after_signal_loses_no_step(self):
    ckpt = self.create_tempdir().full_path
    cfg = _config(self.data, ckpt, epochs=2, bn_reestimate=False,
                  tensorboard_every_steps=1)

    def log(line):
      if line == "epoch 2/2":  # a real SIGTERM, mid-way into epoch 2
        os.kill(os.getpid(), signal.SIGTERM)

    first = train_lib.train(cfg, log=log)
    self.assertFalse(first.finished)
    self.assertEqual(first.step, self.steps + 1)
    with open(os.path.join(ckpt, "run.json")) as f:
      state = json.load(f)
    self.assertEqual((state["epoch"], state["step_in_epoch"]), (1, 1))
    # TensorBoard: epoch 1 as run.json has it, every step so far, and the
    # interrupted epoch's input images.
    events.assert_match_run(self, ckpt, self.steps + 1, input_epochs=[1, 2])
    lines = []
    second = train_lib.train(cfg, log=lines.append)
    self.assertIn("resuming", lines[0])
    self.assertTrue(second.finished)
    self.assertEqual(second.step, 2 * self.steps)
    self.assertEqual([e["step"] for e in second.history],
                     [self.steps, 2 * self.steps])
    # The resumed run continued the same curves: each step and epoch once,
    # the values run.json has (epoch 2's images written again after the
    # cut back to the checkpoint).
    got = events.assert_match_run(self, ckpt, 2 * self.steps)
    self.assertEqual([s for s, _ in got["validation", "final/accuracy"]], [2])
    # A third run finds nothing to do.
    third = train_lib.train(cfg, log=lines.append)
    self.assertEqual(third.step, 2 * self.steps)
    self.assertIn("nothing to do", lines[-1])


class CheckpointRefusalTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = images.make_folder(
        tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()),
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
