"""How a run trains: the tf.distribute strategy, the optimizer (weight
decay, EMA) and the learning-rate schedule (phases, warmup, cosine)."""

import math

import tensorflow as tf


def make_strategy(name):
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multiworker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
  return tf.distribute.MirroredStrategy(devices=devices)


def fine_tune_learning_rate(cfg):
  """The rate after the head phase: --fine_tune_learning_rate, else a tenth
  of --learning_rate (pretrained features need small steps)."""
  if cfg.fine_tune_learning_rate is not None:
    return cfg.fine_tune_learning_rate
  return cfg.learning_rate / 10 if cfg.head_epochs else cfg.learning_rate


def _schedule_class():
  import keras  # pylint: disable=g-import-not-at-top

  @keras.saving.register_keras_serializable("mobilenet_v2")
  class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Rate of step s: phase 1 (head) [0, head_steps) at `rate`, phase 2 up
    to total_steps at `tune_rate`; in each phase a linear warmup over
    `warmup_steps`, then constant or cosine decay to 0 over the phase.  A
    function of the optimizer's step count, which the checkpoint keeps, so
    a resumed run continues on the same curve across the phase switch."""

    def __init__(self, rate, tune_rate, head_steps, total_steps,
                 warmup_steps, cosine):
      self.rate, self.tune_rate = float(rate), float(tune_rate)
      self.head_steps, self.total_steps = int(head_steps), int(total_steps)
      self.warmup_steps, self.cosine = int(warmup_steps), bool(cosine)

    def __call__(self, step):
      s = tf.cast(step, tf.float32)
      tune = s >= self.head_steps
      start = tf.where(tune, float(self.head_steps), 0.0)
      end = tf.where(tune, float(self.total_steps), float(self.head_steps))
      base = tf.where(tune, self.tune_rate, self.rate)
      t = s - start
      factor = tf.constant(1.0)
      if self.warmup_steps:
        factor = tf.minimum(1.0, (t + 1.0) / self.warmup_steps)
      if self.cosine:
        done = tf.minimum(t / tf.maximum(end - start, 1.0), 1.0)
        factor *= 0.5 * (1.0 + tf.cos(math.pi * done))
      return base * factor

    def get_config(self):
      return {"rate": self.rate, "tune_rate": self.tune_rate,
              "head_steps": self.head_steps, "total_steps": self.total_steps,
              "warmup_steps": self.warmup_steps, "cosine": self.cosine}

  return PhaseSchedule


def learning_rate(cfg, steps_per_epoch):
  """A float when the rate is constant (the plain optimizer of before),
  else a PhaseSchedule."""
  tune = fine_tune_learning_rate(cfg)
  warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
  if (cfg.lr_schedule == "constant" and not warmup and
      tune == cfg.learning_rate):
    return cfg.learning_rate
  return _schedule_class()(
      cfg.learning_rate, tune, cfg.head_epochs * steps_per_epoch,
      cfg.epochs * steps_per_epoch, warmup, cfg.lr_schedule == "cosine")


def rate_of_step(optimizer, step):
  """The learning rate global step `step` (1-based) trained with: the
  schedule at the optimizer's iteration count before that step."""
  rate = optimizer._learning_rate  # pylint: disable=protected-access
  if callable(rate):  # a LearningRateSchedule
    return float(rate(step - 1))
  # A variable; under tf.distribute a MirroredVariable, which float() of
  # the Keras variable refuses: read it as a tensor.
  return float(tf.convert_to_tensor(optimizer.learning_rate.value))


def make_optimizer(cfg, steps_per_epoch):
  import keras  # pylint: disable=g-import-not-at-top
  lr = learning_rate(cfg, steps_per_epoch)
  # Keras applies weight decay decoupled (AdamW-style) for every optimizer;
  # use_ema keeps an exponential moving average of the weights, swapped in
  # for validation and export (train_lib).
  extra = {}
  if cfg.weight_decay:
    extra["weight_decay"] = cfg.weight_decay
  if cfg.ema:
    extra.update(use_ema=True, ema_momentum=cfg.ema)
  if cfg.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(lr, **extra)
  if cfg.optimizer == "adam":
    return keras.optimizers.Adam(lr, **extra)
  if cfg.optimizer == "adamw":
    extra.setdefault("weight_decay", 0.004)  # Keras' AdamW default
    return keras.optimizers.AdamW(lr, **extra)
  return keras.optimizers.SGD(lr, momentum=0.9, **extra)


class ema_weights:  # pylint: disable=invalid-name
  """Context: with an EMA (`momentum` > 0) the model's trainable weights
  hold their moving averages inside, their own values again after."""

  def __init__(self, optimizer, momentum):
    self.optimizer = optimizer if momentum else None
    self.saved = None

  def __enter__(self):
    if self.optimizer is not None:
      pairs = self._pairs()
      self.saved = [v.numpy() for v, _ in pairs]
      for v, average in pairs:
        v.assign(average)
    return self

  def __exit__(self, *exc):
    if self.saved is not None:
      for (v, _), value in zip(self._pairs(), self.saved):
        v.assign(value)
      self.saved = None

  def _pairs(self):
    opt = self.optimizer
    return list(zip(opt._trainable_variables,  # pylint: disable=protected-access
                    opt._model_variables_moving_average))  # pylint: disable=protected-access


def finalize_ema(optimizer, momentum):
  """Replaces the weights by their moving averages for good (export)."""
  if momentum:
    for v, average in ema_weights(optimizer, momentum)._pairs():  # pylint: disable=protected-access
      v.assign(average)
