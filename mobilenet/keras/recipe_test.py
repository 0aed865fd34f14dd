"""The training recipe against Keras' own schedules, optimizers and losses:
the learning rate step by step (warmup, cosine, the head -> fine-tune phase
switch), each --optimizer with --weight_decay and --ema, --label_smoothing,
and that with --ema the averaged weights are the ones exported."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from mobilenet.core import model_source
from mobilenet.keras import recipe
from mobilenet.keras import steps
from mobilenet.keras import train_lib
from mobilenet.testing import images


def _keras_rate(base, t, phase_steps, warmup, cosine):
  """Keras' schedules composed: linear warmup (PolynomialDecay, power 1)
  from base / warmup at the phase's first step, times cosine decay to 0."""
  factor = 1.0
  if warmup > 1:
    factor *= float(keras.optimizers.schedules.PolynomialDecay(
        1.0 / warmup, warmup - 1, 1.0, power=1.0)(t))
  if cosine:
    factor *= float(keras.optimizers.schedules.CosineDecay(
        1.0, phase_steps)(t))
  return base * factor


class ScheduleTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("default_recipe", dict(), 8),
      ("head_phase_then_fine_tune", dict(epochs=4, head_epochs=1,
                                         init_weights="bundled",
                                         warmup_epochs=0.6), 5),
      ("fine_tune_rate_given", dict(epochs=3, head_epochs=2,
                                    init_weights="bundled",
                                    fine_tune_learning_rate=5e-4,
                                    warmup_epochs=0.0), 4),
      ("constant_with_warmup", dict(lr_schedule="constant",
                                    warmup_epochs=0.5), 6))
  def test_rate_of_every_step(self, kw, steps_per_epoch):
    cfg = train_lib.Config(**kw)
    schedule = recipe.learning_rate(cfg, steps_per_epoch)
    head = cfg.head_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    tune = (cfg.fine_tune_learning_rate or
            (cfg.learning_rate / 10 if cfg.head_epochs else
             cfg.learning_rate))
    for s in range(total + 2):  # past the end the rate stays at 0 / tune
      if s < head:
        want = _keras_rate(cfg.learning_rate, s, head, warmup,
                           cfg.lr_schedule == "cosine")
      else:
        want = _keras_rate(tune, s - head, total - head, warmup,
                           cfg.lr_schedule == "cosine")
      self.assertAlmostEqual(float(schedule(s)), want, delta=1e-6 * want +
                             1e-12, msg=f"step {s}")
    if head:  # the switch: phase 2 restarts its warmup at the tuned rate
      first = tune / warmup if warmup > 1 else tune
      self.assertAlmostEqual(float(schedule(head)), first, delta=1e-9)

  def test_constant_without_warmup_is_a_plain_rate(self):
    cfg = train_lib.Config(lr_schedule="constant", warmup_epochs=0.0,
                           learning_rate=3e-3)
    self.assertEqual(recipe.learning_rate(cfg, 10), 3e-3)


_REFERENCE = {  # --optimizer -> Keras' optimizer with the README's settings
    "rmsprop": lambda lr, **kw: keras.optimizers.RMSprop(lr, **kw),
    "adam": lambda lr, **kw: keras.optimizers.Adam(lr, **kw),
    "adamw": lambda lr, **kw: keras.optimizers.AdamW(
        lr, **dict({"weight_decay": 0.004}, **kw)),
    "sgd": lambda lr, **kw: keras.optimizers.SGD(lr, momentum=0.9, **kw),
}


class OptimizerTest(parameterized.TestCase):

  @parameterized.product(optimizer=sorted(_REFERENCE),
                         weight_decay=(0.0, 0.05), ema=(0.0, 0.8))
  def test_steps_match_keras(self, optimizer, weight_decay, ema):
    cfg = train_lib.Config(optimizer=optimizer, weight_decay=weight_decay,
                           ema=ema, lr_schedule="constant",
                           warmup_epochs=0.0, learning_rate=0.05)
    extra = {}
    if weight_decay:
      extra["weight_decay"] = weight_decay
    if ema:
      extra.update(use_ema=True, ema_momentum=ema)
    ours, ref = recipe.make_optimizer(cfg, 10), _REFERENCE[optimizer](
        0.05, **extra)
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(4)]
    runs = []
    for opt in (ours, ref):
      v = keras.Variable(start)
      trajectory = []
      for g in grads:
        opt.apply_gradients([(tf.constant(g), v)])
        trajectory.append(v.numpy())
      runs.append((opt, v, trajectory))
    (_, v, got), (_, _, want) = runs
    np.testing.assert_array_equal(np.stack(got), np.stack(want))
    # The steps moved, and decay (a pull towards 0) made a difference.
    self.assertGreater(np.abs(got[-1] - start).max(), 1e-3)
    # The EMA by hand (Keras: the first step's average is the weights).
    average = got[0]
    for w in got[1:]:
      average = ema * average + (1 - ema) * w
    with recipe.ema_weights(ours, ema):
      inside = v.numpy()
    np.testing.assert_array_equal(v.numpy(), got[-1])  # restored after
    np.testing.assert_allclose(inside, average if ema else got[-1],
                               rtol=1e-6, atol=1e-7)
    recipe.finalize_ema(ours, ema)
    np.testing.assert_array_equal(v.numpy(), inside)

  def test_weight_decay_pulls_towards_zero(self):
    """Decoupled decay on a zero gradient: w <- w (1 - lr wd) per step."""
    for optimizer in sorted(_REFERENCE):
      cfg = train_lib.Config(optimizer=optimizer, weight_decay=0.1,
                             lr_schedule="constant", warmup_epochs=0.0,
                             learning_rate=0.5)
      opt = recipe.make_optimizer(cfg, 10)
      v = keras.Variable(np.full((2,), 2.0, np.float32))
      opt.apply_gradients([(tf.zeros((2,)), v)])
      np.testing.assert_allclose(v.numpy(), 2.0 * (1 - 0.5 * 0.1), rtol=1e-6,
                                 err_msg=optimizer)


class LossTest(absltest.TestCase):

  def test_label_smoothing_is_keras_categorical_crossentropy(self):
    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(0, 3, (6, 5)).astype(np.float32))
    labels = tf.constant([0, 4, 2, 2, 1, 3], tf.int64)
    for smoothing in (0.0, 0.1, 0.3):
      per_example, sums = steps._loss_and_counts(  # pylint: disable=protected-access
          labels, logits, smoothing)
      want = keras.losses.CategoricalCrossentropy(
          from_logits=True, label_smoothing=smoothing, reduction=None)(
              tf.one_hot(labels, 5), logits).numpy()
      np.testing.assert_allclose(per_example.numpy(), want, rtol=1e-5,
                                 err_msg=f"smoothing {smoothing}")
      self.assertAlmostEqual(float(sums[0]), float(want.sum()), places=4)
      self.assertEqual(float(sums[1]), float(np.sum(
          logits.numpy().argmax(-1) == labels.numpy())))


class EmaExportTest(absltest.TestCase):

  def test_exported_weights_are_the_average(self):
    """One step per epoch, --ema=0.999999: the average stays the first
    step's weights (Keras starts it there), so the 3-epoch export must be
    the 1-epoch run's weights, not the 3rd step's (constant rate: step 1
    is the same in both runs)."""
    root = self.create_tempdir().full_path
    data = images.make_folder(os.path.join(root, "data"), per_class=4,
                              bad_files=False)

    def run(name, **kw):
      cfg = train_lib.Config(
          data_dir=data, val_dir=data, alpha=0.35, input_size=32, channels=3,
          batch_size=12, learning_rate=0.01, lr_schedule="constant",
          warmup_epochs=0.0, augment="none", bn_reestimate=False,
          checkpoint_dir=os.path.join(root, name), verbose=0, **kw)
      result = train_lib.train(cfg, log=lambda _: None)
      return model_source.resolve(result.export_path).params

    one = run("one", epochs=1)
    averaged = run("ema", epochs=3, ema=0.999999)
    for layer, weights in one.items():
      for key in weights:
        if key.startswith("moving_"):
          continue  # BN statistics are not averaged
        # 1e-6 of two later RMSprop steps at lr 0.01 (each moves a weight
        # by <~0.03) is < 1e-7; the 3rd step's weights are ~1e-2 away.
        np.testing.assert_allclose(averaged[layer][key], one[layer][key],
                                   rtol=1e-5, atol=1e-6,
                                   err_msg=f"{layer}/{key}")


if __name__ == "__main__":
  absltest.main()
