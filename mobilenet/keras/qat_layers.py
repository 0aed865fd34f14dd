"""The Keras layers QAT adds to MobileNetV2(qat=...): each calls core/qat.py,
the same hooks forward.py's "qat" modes call.

* `QatBatchNorm` is layers.BatchNorm (same variables, names, moving-average
  update and re-estimation) whose output is the conv before it run again
  with the BN-folded, fake-quantized kernel: it is called on [conv input,
  float conv output], the latter only for the batch statistics (moving ones
  after `freeze_bn_after`).
* `QatClassifier` is layers.Classifier with the int8 weight grid (logits
  only: the logits are a quant point, softmax is TFLite's fixed-range op).
* `ActivationQuant` ("<layer>_quant") holds one quant point's [min, max]
  (non-trainable, EMA-updated in training) and fake-quantizes through it.
"""

import keras

from mobilenet.core import ops
from mobilenet.core import qat
from mobilenet.keras import layers as L


class QatBatchNorm(L.BatchNorm):

  def __init__(self, conv, granularity="per_channel", **kwargs):
    super().__init__(**kwargs)
    qat.validate_granularity(granularity)
    self.granularity = granularity
    object.__setattr__(self, "conv", conv)  # owns the kernel; not tracked
    object.__setattr__(self, "_freeze_after", None)  # freeze_bn_after

  def build(self, input_shape):
    super().build(input_shape[1])

  def call(self, inputs, training=None):
    x, conv_out = inputs
    conv = self.conv
    if training and self.trainable:
      # Folded with the batch's statistics, which move the averages as
      # layers.BatchNorm does (re-estimation included), until the BN freeze.
      momentum = self.momentum
      count = self._reestimate_count
      if count is not None:
        momentum = count / (count + 1.0)
      frozen = False
      if self._freeze_after is not None:
        step, steps = self._freeze_after
        frozen = step >= steps
      mean, variance, new_mean, new_variance = qat.bn_statistics(
          conv_out, self.moving_mean, self.moving_variance, momentum, frozen)
      self.moving_mean.assign(new_mean)
      self.moving_variance.assign(new_variance)
    else:  # inference and frozen BN: the moving statistics, as exported
      mean, variance = self.moving_mean, self.moving_variance
    padding = conv.padding.upper()
    return qat.folded_conv(x, conv.kernel, conv.kind, conv.strides, padding,
                           self.gamma, self.beta, mean, variance,
                           self.epsilon, self.granularity)

  def compute_output_shape(self, input_shape):
    return input_shape[1]

  def get_config(self):
    return {**super().get_config(), "granularity": self.granularity}


class QatClassifier(L.Classifier):
  """layers.Classifier (logits) with its kernel fake-quantized as the int8
  FULLY_CONNECTED's weights (qat.quantize_kernel)."""

  def __init__(self, units, granularity="per_channel", **kwargs):
    super().__init__(units, None, **kwargs)
    qat.validate_granularity(granularity)
    self.granularity = granularity

  def call(self, x):
    return ops.dense(x, qat.quantize_kernel(self.kernel, "dense",
                                            self.granularity), self.bias)

  def get_config(self):
    config = {**super().get_config(), "granularity": self.granularity}
    del config["activation"]
    return config


def freeze_bn_after(model, step, steps):
  """TFLite's BN freeze: once `step` (a tf.Variable counting the train
  steps done) reaches `steps`, every QatBatchNorm of `model` folds with its
  moving statistics in training too and no longer updates them, so training
  runs the exported network.  Read when a step is traced; the switch itself
  is in the graph (a resumed run is frozen from its first step)."""
  for layer in model.layers:
    if isinstance(layer, QatBatchNorm):
      object.__setattr__(layer, "_freeze_after", (step, steps))


class ActivationQuant(keras.layers.Layer):
  """Fake quantization of one activation tensor over an EMA range."""

  def __init__(self, momentum=qat.RANGE_MOMENTUM, **kwargs):
    super().__init__(**kwargs)
    self.momentum = momentum

  def build(self, input_shape):
    del input_shape
    # Width 0 = not seen yet (qat.fake_quant passes the tensor through).
    # Every replica computes the same update (qat.batch_range): keep the
    # first replica's, as layers.BatchNorm's moving statistics.
    self.range = self.add_weight(
        shape=(2,), initializer="zeros", name="range", trainable=False,
        autocast=False, aggregation="only_first_replica")

  def call(self, x, training=None):
    # Ranges are observers: they follow the data in training even in a
    # frozen layer (a fresh model's backbone ranges are set in its head
    # phase).
    if training:
      self.range.assign(qat.updated_range(self.range, x, self.momentum))
    return qat.fake_quant(x, self.range)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "momentum": self.momentum}
