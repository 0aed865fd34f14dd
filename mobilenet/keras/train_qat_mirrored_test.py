"""`train --qat --strategy=mirrored` on 2 logical CPU devices: it trains, the
activation ranges follow the documented rule (each step's range is the
replicas' mean of their batch's [min, max], widened to contain 0, then the
EMA), every replica holds the same bits, validation leaves the ranges as it
found them, and the export converts to a full-integer int8 model."""

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

# Must happen before TensorFlow initializes its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

from mobilenet.core import qat  # pylint: disable=g-import-not-at-top
from mobilenet.keras import finish  # pylint: disable=g-import-not-at-top
from mobilenet.keras import qat_layers  # pylint: disable=g-import-not-at-top
from mobilenet.keras import train_lib  # pylint: disable=g-import-not-at-top
from mobilenet.testing import images  # pylint: disable=g-import-not-at-top
from mobilenet.tflite import qat_export  # pylint: disable=g-import-not-at-top
from mobilenet.tflite import runtime  # pylint: disable=g-import-not-at-top


def _replica_values(var):
  var = getattr(var, "value", var)  # a Keras variable wraps the tf one
  return [v.numpy() for v in getattr(var, "values", [var])]


def _hand_range(old, pieces):
  """The documented rule in float32 numpy: the mean over the replicas of
  [min(piece, 0), max(piece, 0)]; a range not set yet (width 0) becomes
  it, a set one moves by the EMA (qat.RANGE_MOMENTUM)."""
  per_replica = [np.array([min(p.min(), 0.0), max(p.max(), 0.0)], np.float32)
                 for p in pieces]
  batch = sum(per_replica) / np.float32(len(per_replica))
  if not old[1] - old[0] > 0:
    return batch
  m = qat.RANGE_MOMENTUM
  return old * np.float32(m) + batch * np.float32(1.0 - m)


class QatMirroredTest(absltest.TestCase):

  def test_ranges_are_the_replica_mean_and_the_export_converts(self):
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    # 3 classes x 8 images, val_split 0.25: 18 training images in batches of
    # 8, 8 and 2, split 4 + 4, 4 + 4 and 1 + 1 over the replicas.
    data = images.spread_folder(os.path.join(root, "data"))
    cfg = train_lib.Config(
        data_dir=data, alpha=0.35, input_size=32, channels=3, epochs=1,
        batch_size=8, val_split=0.25, augment="none", strategy="mirrored",
        qat=True, bn_reestimate_batches=2, tensorboard=False, verbose=0,
        checkpoint_dir=os.path.join(root, "run"))
    trainer = train_lib.Trainer(cfg, log=lambda _: None)
    strategy = trainer.strategy
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    quants = [l for l in trainer.model.layers
              if isinstance(l, qat_layers.ActivationQuant)]
    input_range = trainer.model.get_layer("input_quant").range
    want = np.zeros(2, np.float32)
    ds, step = trainer.epoch_stream(0)
    pieces_seen = []
    for batch in trainer.batches(ds, trainer.train_data):
      pieces = [p.numpy() for p in
                strategy.experimental_local_results(batch[0])]
      pieces_seen.append([len(p) for p in pieces])
      # The rule is not the global batch's range here (it would be, were
      # the replicas' ranges the same).
      self.assertFalse(np.array_equal(
          _hand_range(np.zeros(2), pieces),
          _hand_range(np.zeros(2), [np.concatenate(pieces)])))
      want = _hand_range(want, pieces)
      step(batch)
      for got in _replica_values(input_range):
        np.testing.assert_array_equal(got, want)
    self.assertEqual(pieces_seen, [[4, 4], [4, 4], [1, 1]])
    for layer in quants:  # every range set, the same bits on both replicas
      a, b = _replica_values(layer.range)
      np.testing.assert_array_equal(a, b, err_msg=layer.name)
      self.assertGreater(a[1], a[0], layer.name)

    # Validation with BN re-estimation runs the model in training mode over
    # training batches; it leaves the ranges (and statistics) as they were.
    kept = {l.name: _replica_values(l.range)[0] for l in quants}
    trainer.evaluate(reestimate=True)
    for layer in quants:
      for got in _replica_values(layer.range):
        np.testing.assert_array_equal(got, kept[layer.name],
                                      err_msg=layer.name)

    trainer.step_in_epoch.assign(0)
    trainer.epoch.assign(1)
    result = finish.finish(trainer)
    with open(os.path.join(root, "run", "model.json"), encoding="utf8") as f:
      ranges = json.load(f)["qat"]["ranges"]
    # The export's ranges are the variables' (after the final BN
    # re-estimation, which moves them with the statistics).
    for layer in quants:
      np.testing.assert_array_equal(
          np.float32(ranges[layer.name[:-len("_quant")]]),
          _replica_values(layer.range)[0], err_msg=layer.name)
    tflite = os.path.join(root, "run", "model_int8.tflite")
    qat_export.check_full_integer(tflite)
    detail = runtime.Model(tflite, use_default_delegates=False
                           ).interpreter.get_input_details()[0]
    lo, hi = ranges["input"]
    scale, zero = detail["quantization"]
    self.assertAlmostEqual(scale, (hi - lo) / 255.0, delta=scale * 1e-6)
    self.assertEqual(zero, round(-lo * 255.0 / (hi - lo)) - 128)
    self.assertTrue(result.finished)


if __name__ == "__main__":
  absltest.main()
