"""The training loop under MirroredStrategy on 2 logical CPU devices.

What mirrored training must do, asserted against single-device training
(the "default" strategy) on the same global batch from the same weights, and
against itself (replicas, step counts, the export).  Nothing here depends on
training reaching some loss.
"""

import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

# Must happen before TensorFlow initializes its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

from mobilenet.core import model_source  # pylint: disable=g-import-not-at-top
from mobilenet.core import ops  # pylint: disable=g-import-not-at-top
from mobilenet.keras import layers  # pylint: disable=g-import-not-at-top
from mobilenet.keras import model as model_lib  # pylint: disable=g-import-not-at-top
from mobilenet.testing import images  # pylint: disable=g-import-not-at-top
from mobilenet.testing import models  # pylint: disable=g-import-not-at-top
from mobilenet.testing import tools  # pylint: disable=g-import-not-at-top
from mobilenet.testing import updates  # pylint: disable=g-import-not-at-top
from mobilenet.keras import train_lib  # pylint: disable=g-import-not-at-top

# 3 classes x 15 images; val_split 0.25 holds out round(3.75) = 4 per class:
# 33 training images, 12 validation images.
PER_CLASS = 15
TRAIN_IMAGES = 33

# One SGD step, mirrored vs one device.  The two runs sum the same numbers
# in different orders (per-replica partial sums, then the all-reduce), so
# they differ by float32 rounding, which this freshly initialized 52-BN
# network amplifies: the forward differences grow from 1e-6 at Conv1 to
# ~2e-4 at Conv_1, and the few ReLU6 inputs that close to 0 switch side,
# each changing one element's gradient outright.  Single-device training on
# the same batch in another order differs from itself just as much.
# Measured (2 logical CPUs), |mirrored update - single update| / |single
# update| over all trainable variables together: 2.3 % (oneDNN off), 4.7 %
# (on), 5.7 % (off, on a digits-augmented batch); the worst single
# variable: 3.6 % (off), 11 % (on: a BN beta whose whole update is 1e-4).
# Defects are far above: without synchronized BN (each replica normalizing
# its half) the updates differ by 190-360 % (every variable); gradients not
# summed over the replicas would be 50 % off.  A second step is not
# compared: from there the rounding difference compounds chaotically (20 %
# after two steps even at lr 1e-5, 100 % after three at 2e-3), in mirrored
# and permuted single-device runs alike.
# Bounds: mobilenet.testing.updates (RTOL_ALL 0.25, RTOL_EACH 0.5).
# Moving statistics are a forward-pass outcome (no gradient in between):
# measured max |diff| 5.9e-6 / 6.9e-6 (oneDNN on/off) on moving variances
# ~1 that this step moved by up to 9; unsynchronized: 0.1 to 1.
STATS_ATOL = 2e-4
STATS_RTOL = 1e-4


def _config(data_dir, ckpt, **kw):
  args = dict(data_dir=data_dir, alpha=0.35, input_size=32, channels=3,
              epochs=2, batch_size=12, learning_rate=2e-3, val_split=0.25,
              checkpoint_dir=ckpt, strategy="mirrored", bn_momentum=0.9,
              bn_reestimate_batches=4, verbose=0)
  args.update(kw)
  return train_lib.Config(**args)


def _replica_values(var):
  var = getattr(var, "value", var)  # a Keras variable wraps the tf one
  values = getattr(var, "values", None)
  if values is None:  # a plain variable: one copy
    return [var.numpy()]
  return [v.numpy() for v in values]


class MirroredTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = images.make_folder(
        tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()),
        per_class=PER_CLASS, bad_files=False)

  def test_replicas_identical_steps_counted_export_equals_variables(self):
    # 33 images in batches of 12: 12, 12, 9 -- the last one splits 5 + 4,
    # so the synchronized BN statistics weigh unequal pieces.
    trainer = train_lib.Trainer(
        _config(self.data, self.create_tempdir().full_path),
        log=lambda _: None)
    self.assertEqual(trainer.strategy.num_replicas_in_sync, 2)
    result = trainer.run()
    self.assertTrue(result.finished)
    self.assertEqual(result.step, 2 * 3)
    self.assertEqual([h["step"] for h in result.history], [3, 6])
    self.assertEqual(int(trainer.bn_count.numpy()), 3)  # all 3 batches
    for h in result.history:
      self.assertTrue(all(np.isfinite(h[k]) for k in ("loss", "val_loss")), h)
    # Every mirrored variable (weights, BN statistics, optimizer slots and
    # step count) holds the same bits on both replicas.
    for var in trainer.model.variables + trainer.optimizer.variables:
      replicas = _replica_values(var)
      self.assertLen(replicas, 2, var.path)
      np.testing.assert_array_equal(replicas[0], replicas[1],
                                    err_msg=var.path)
    self.assertGreater(len(trainer.optimizer.variables),
                       len(trainer.model.trainable_variables))  # slots
    # The export holds exactly those values.
    src = model_source.resolve(result.export_path)
    exported = src.params
    variables = {v.path: _replica_values(v)[0] for v in trainer.model.weights}
    self.assertLen(variables, sum(len(p) for p in exported.values()))
    for layer, keys in model_lib.get_params(trainer.model).items():
      for key in keys:
        var_key = "kernel" if key == "depthwise_kernel" else key
        np.testing.assert_array_equal(exported[layer][key],
                                      variables[f"{layer}/{var_key}"],
                                      err_msg=f"{layer}/{key}")
    self.assertEqual(src.metadata["val_accuracy"], result.accuracy)
    self.assertEqual(src.metadata["steps"], 6)

  def test_matches_single_device_training_on_the_same_global_batch(self):
    # One step over the whole training set (batch 33: 17 + 16 on the two
    # replicas), SGD: see the bounds comment above for why SGD and one step.
    def trainer(strategy):
      cfg = _config(self.data, self.create_tempdir().full_path,
                    strategy=strategy, optimizer="sgd", learning_rate=1e-3,
                    lr_schedule="constant", warmup_epochs=0.0,
                    augment="none", epochs=1, batch_size=TRAIN_IMAGES,
                    bn_reestimate=False)
      return train_lib.Trainer(cfg, log=lambda _: None)

    mirrored, single = trainer("mirrored"), trainer("default")
    self.assertEqual(mirrored.strategy.num_replicas_in_sync, 2)
    self.assertEqual(single.strategy.num_replicas_in_sync, 1)
    initial = [w.copy() for w in single.model.get_weights()]
    mirrored.model.set_weights(initial)
    for var, want in zip(mirrored.model.weights, initial):
      for got in _replica_values(var):
        np.testing.assert_array_equal(got, want)

    got, want = mirrored.run(), single.run()
    self.assertEqual((got.step, want.step), (1, 1))
    # The step's loss is the initial weights' loss on the same 33 images.
    np.testing.assert_allclose(got.history[0]["loss"],
                               want.history[0]["loss"], rtol=1e-5)

    def assert_updates_agree(pairs, what):
      updates.assert_updates_agree(self, pairs,
                                   f"mirrored vs single device, {what}")

    names = [v.path for v in single.model.weights]
    stats = {v.path for v in single.model.non_trainable_weights}
    trainable = []
    stats_diff = stats_change = 0.0
    for name, a, b, b0 in zip(names, mirrored.model.get_weights(),
                              single.model.get_weights(), initial):
      if name in stats:  # moving statistics: 0.9 * initial + 0.1 * batch
        np.testing.assert_allclose(a, b, rtol=STATS_RTOL, atol=STATS_ATOL,
                                   err_msg=name)
        stats_diff = max(stats_diff, float(np.abs(a - b).max()))
        stats_change = max(stats_change, float(np.abs(b - b0).max()))
      else:
        trainable.append((name, a, b, b0))
    print(f"mirrored vs single device, one step: moving statistics max "
          f"|difference| {stats_diff:.3g}, max change {stats_change:.3g}")
    self.assertGreater(stats_change, 100 * STATS_ATOL)
    self.assertLen(trainable, len(single.model.trainable_weights))
    assert_updates_agree(trainable, "trainable variables")
    # The optimizer's state: iteration count, and momentum buffers (after
    # one step: -learning_rate * gradient).
    slots = []
    for var_m, var_s in zip(mirrored.optimizer.variables,
                            single.optimizer.variables):
      a, b = _replica_values(var_m)[0], var_s.numpy()
      if a.dtype.kind in "iu" or a.ndim == 0:
        np.testing.assert_array_equal(a, b, err_msg=var_s.path)
      else:
        slots.append((var_s.path, a, b, np.zeros_like(b)))
    self.assertLen(slots, len(trainable))
    assert_updates_agree(slots, "momentum buffers")

    # Same weights on both: BN re-estimation and evaluation agree.
    mirrored.model.set_weights(single.model.get_weights())
    self.assertEqual(mirrored.reestimate_bn(), single.reestimate_bn())
    for layer in model_lib.batch_norm_layers(single.model):
      other = mirrored.model.get_layer(layer.name)
      for key in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            getattr(other, key).numpy(), getattr(layer, key).numpy(),
            rtol=STATS_RTOL, atol=STATS_ATOL, err_msg=f"{layer.name}/{key}")
    # (Accuracies are not compared: these near-uniform logits make argmax
    # ties within rounding likely; the loss holds the same information.)
    (loss_m, _), (loss_s, _) = mirrored.evaluate(), single.evaluate()
    np.testing.assert_allclose(loss_m, loss_s, rtol=1e-5)


class CommandLineTest(absltest.TestCase):

  def test_train_mirrored_on_num_cpu_devices_equals_one_device(self):
    """`train --strategy=mirrored --num_cpu_devices=2` as a user runs it:
    two replicas, and one SGD step from a start we wrote agrees with the
    default strategy's (updates.py's bounds)."""
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    data = images.make_folder(f"{root}/data", per_class=PER_CLASS,
                              bad_files=False)
    start = models.write_initial_params(f"{root}/start.h5", 0.35, 3, 3)
    args = ["train", f"--data_dir={data}", "--alpha=0.35", "--input_size=32",
            "--val_split=0.25", "--optimizer=sgd", "--learning_rate=1e-3",
            "--lr_schedule=constant", "--warmup_epochs=0", "--augment=none",
            "--bn_momentum=0.9", "--nobn_reestimate", "--epochs=1",
            f"--batch_size={TRAIN_IMAGES}", f"--init_weights={root}/start.h5",
            "--fine_tune_bn=train"]
    runs = {}
    for name, extra in (("mirrored", ["--strategy=mirrored",
                                      "--num_cpu_devices=2"]),
                        ("single", [])):
      proc = tools.run_tool("mobilenet/keras/train.py", *args, *extra,
                            f"--checkpoint_dir={root}/{name}", timeout=600)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      runs[name] = (proc.stdout, model_source.resolve(
          f"{root}/{name}/model.h5").params)
    self.assertIn("mirrored over 2 device(s)", runs["mirrored"][0])
    got, want = runs["mirrored"][1], runs["single"][1]
    pairs = []
    for layer, keys in want.items():
      for key, value in keys.items():
        if not key.startswith("moving_"):
          pairs.append((f"{layer}/{key}", got[layer][key], value,
                        start[layer][key]))
    updates.assert_updates_agree(self, pairs, "train CLI mirrored vs single")


class SyncBatchNormLayerTest(absltest.TestCase):
  """The BatchNorm layer under MirroredStrategy against the same layer on one
  device over the concatenated batch, and against Keras' own synchronized
  BatchNormalization."""

  def test_layer_uses_the_global_batch(self):
    import keras  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(0)
    c = 5
    # Uneven pieces (3 + 5 images), shifted and scaled per channel.
    x = (rng.normal(size=(8, 4, 3, c)) * rng.uniform(0.5, 3, c) +
         rng.uniform(-2, 2, c)).astype(np.float32)
    pieces = (x[:3], x[3:])
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.uniform(-1, 1, c).astype(np.float32)
    mean0 = rng.uniform(-1, 1, c).astype(np.float32)
    var0 = rng.uniform(0.5, 2, c).astype(np.float32)

    def make(cls, **kw):
      layer = cls(momentum=0.9, epsilon=1e-3, **kw)
      layer.build((None, 4, 3, c))
      layer.set_weights([gamma, beta, mean0, var0])
      return layer

    single = make(layers.BatchNorm)
    want = single(x, training=True).numpy()
    # Reduction through one device: this process's Trainers create their
    # own MirroredStrategy, and two strategies' collective ops share keys
    # (each numbers its groups from 1), so a second one issuing
    # differently shaped collectives would collide with theirs.
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
      ours = make(layers.BatchNorm)
      theirs = make(keras.layers.BatchNormalization, synchronized=True)

    def run(layer):
      # One layer per run: two independent layers' collectives in one
      # function may be issued in different orders on the two replicas.
      @tf.function
      def step():
        def replica():
          ctx = tf.distribute.get_replica_context()
          self.assertIsNotNone(ops.sync_replica_context())
          piece = tf.cond(ctx.replica_id_in_sync_group == 0,
                          lambda: tf.constant(pieces[0]),
                          lambda: tf.constant(pieces[1]))
          return layer(piece, training=True)
        return strategy.run(replica)
      return np.concatenate(
          [t.numpy() for t in strategy.experimental_local_results(step())])

    got, keras_got = run(ours), run(theirs)
    # Same op chain as the single-device path, partial sums in another
    # order: differences of a few ulps (measured 4.8e-7 on outputs ~3).
    np.testing.assert_allclose(got, want, atol=2e-6)
    # Keras' E[x^2] - E[x]^2 variance loses a few more bits.
    np.testing.assert_allclose(got, keras_got, atol=2e-5)
    # The unsynchronized alternative would be far off: the pieces differ.
    local = make(layers.BatchNorm)(pieces[0], training=True).numpy()
    self.assertGreater(np.abs(local - want[:3]).max(), 0.1)
    for key in ("moving_mean", "moving_variance"):
      values = _replica_values(getattr(ours, key))
      np.testing.assert_array_equal(values[0], values[1])
      np.testing.assert_allclose(values[0], getattr(single, key).numpy(),
                                 rtol=1e-6, atol=1e-6)
      np.testing.assert_allclose(values[0],
                                 getattr(theirs, key).numpy(), atol=2e-5)
    # Keras semantics, independently: biased variance, momentum 0.9.
    flat = x.reshape(-1, c).astype(np.float64)
    np.testing.assert_allclose(_replica_values(ours.moving_variance)[0],
                               0.9 * var0 + 0.1 * flat.var(0), rtol=1e-5)
    np.testing.assert_allclose(_replica_values(ours.moving_mean)[0],
                               0.9 * mean0 + 0.1 * flat.mean(0), atol=1e-6)


if __name__ == "__main__":
  absltest.main()
