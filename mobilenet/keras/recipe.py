"""How a run trains: the tf.distribute strategy and the optimizer."""

import tensorflow as tf


def make_strategy(name):
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
  return tf.distribute.MirroredStrategy(devices=devices)


def make_optimizer(cfg, total_steps):
  import keras  # pylint: disable=g-import-not-at-top
  lr = cfg.learning_rate
  if cfg.lr_schedule == "cosine":
    # A function of the optimizer's step count, which the checkpoint keeps,
    # so a resumed run continues on the same curve.
    lr = keras.optimizers.schedules.CosineDecay(lr, total_steps)
  if cfg.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(lr)
  if cfg.optimizer == "adam":
    return keras.optimizers.Adam(lr)
  return keras.optimizers.SGD(lr, momentum=0.9)
