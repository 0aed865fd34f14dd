"""The training loop under MirroredStrategy on 2 logical CPU devices."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl.testing import absltest
import numpy as np
import tensorflow as tf

# Must happen before TensorFlow initializes its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

from mobilenet.core import model_source  # pylint: disable=g-import-not-at-top
from mobilenet.keras import testdata  # pylint: disable=g-import-not-at-top
from mobilenet.keras import train_lib  # pylint: disable=g-import-not-at-top


class MirroredTest(absltest.TestCase):

  def test_two_replicas_train_and_export(self):
    data = testdata.make_folder(self.create_tempdir().full_path, per_class=16,
                                bad_files=False)
    cfg = train_lib.Config(
        data_dir=data, alpha=0.35, input_size=32, channels=3, epochs=2,
        batch_size=12, learning_rate=2e-3, val_split=0.25,
        checkpoint_dir=self.create_tempdir().full_path, strategy="mirrored",
        bn_momentum=0.9, bn_reestimate_batches=4, verbose=0)
    trainer = train_lib.Trainer(cfg, log=lambda _: None)
    self.assertEqual(trainer.strategy.num_replicas_in_sync, 2)
    result = trainer.run()
    self.assertTrue(result.finished)
    self.assertEqual(result.step, 2 * 3)  # 36 training images / 12
    self.assertTrue(all(np.isfinite(h["loss"]) for h in result.history))
    self.assertLess(result.history[-1]["loss"], result.history[0]["loss"])
    # Mirrored copies stay identical, and the export holds those values.
    var = trainer.model.get_layer("Conv1").kernel.value
    replicas = [v.numpy() for v in var.values]
    np.testing.assert_array_equal(replicas[0], replicas[1])
    src = model_source.resolve(result.export_path)
    np.testing.assert_array_equal(src.params["Conv1"]["kernel"], replicas[0])
    self.assertEqual(src.metadata["val_accuracy"], result.accuracy)


if __name__ == "__main__":
  absltest.main()
