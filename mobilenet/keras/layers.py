"""Keras layers whose call() runs the core raw-op kernels (mobilenet.core.ops).

Each layer owns exactly the variables of the keras.applications layer of the
same name, created in the same order, so a model made of them has Keras'
`get_weights()` order and shapes.
"""

import keras

from mobilenet.core import arch
from mobilenet.core import ops


class Conv(keras.layers.Layer):
  """Bias-free conv ("conv") or depthwise conv ("depthwise"), as Keras'
  Conv2D / DepthwiseConv2D with use_bias=False."""

  def __init__(self, kind, filters, kernel_size, strides=1, padding="same",
               **kwargs):
    super().__init__(**kwargs)
    if kind not in ("conv", "depthwise"):
      raise ValueError(f"kind must be 'conv' or 'depthwise', got {kind!r}.")
    self.kind = kind
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.padding = padding

  def build(self, input_shape):
    k, c = self.kernel_size, input_shape[-1]
    shape = (k, k, c, 1) if self.kind == "depthwise" else (k, k, c,
                                                          self.filters)
    # Keras 3 calls the depthwise weight "kernel" as well.
    self.kernel = self.add_weight(shape=shape, initializer="glorot_uniform",
                                  name="kernel")

  def call(self, x):
    padding = self.padding.upper()
    if self.kind == "depthwise":
      return ops.depthwise_conv2d(x, self.kernel, None, self.strides, padding)
    return ops.conv2d(x, self.kernel, None, self.strides, padding)

  def compute_output_shape(self, input_shape):
    n, h, w, c = input_shape
    out_c = c if self.kind == "depthwise" else self.filters

    def size(v):
      if v is None:
        return None
      if self.padding == "valid":
        return (v - self.kernel_size) // self.strides + 1
      return -(-v // self.strides)

    return (n, size(h), size(w), out_c)

  def get_config(self):
    return {**super().get_config(), "kind": self.kind,
            "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "padding": self.padding}


class BatchNorm(keras.layers.Layer):
  """Keras BatchNormalization (axis -1, epsilon 1e-3) on the core kernels.

  Training mode normalizes with the batch statistics and moves the moving
  averages by `momentum`.  While `reestimate_count` (a tf.Variable, set by
  `start_reestimation`) is attached, the moving statistics instead become
  the running mean of the batch statistics seen since that count was 0.

  Under a tf.distribute strategy with several replicas in sync (Mirrored,
  MultiWorkerMirrored) the batch statistics are the global batch's
  (synchronized batch norm, ops.sync_batch_norm_training), so training
  there equals one device training on the whole global batch.
  """

  def __init__(self, momentum=arch.BN_MOMENTUM, epsilon=arch.BN_EPSILON,
               **kwargs):
    super().__init__(**kwargs)
    self.momentum = momentum
    self.epsilon = epsilon
    object.__setattr__(self, "_reestimate_count", None)  # not tracked

  def build(self, input_shape):
    shape = (input_shape[-1],)
    self.gamma = self.add_weight(shape=shape, initializer="ones",
                                 name="gamma", autocast=False)
    self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta",
                                autocast=False)
    # Assigned from replica context under a tf.distribute strategy.  The
    # statistics are synchronized, so every replica computes the same value:
    # taking the first replica's keeps the copies bit-identical for any
    # replica count (a "mean" of N equal floats need not round back to the
    # value when N is not a power of 2) and needs no reduction.
    self.moving_mean = self.add_weight(
        shape=shape, initializer="zeros", name="moving_mean", trainable=False,
        autocast=False, aggregation="only_first_replica")
    self.moving_variance = self.add_weight(
        shape=shape, initializer="ones", name="moving_variance",
        trainable=False, autocast=False, aggregation="only_first_replica")

  def call(self, x, training=None):
    # A frozen layer (trainable=False) normalizes with its moving statistics
    # and leaves them as they are, as Keras' BatchNormalization does: the
    # transfer-learning rule (see finetune.py).
    if not training or not self.trainable:
      return ops.batch_norm_inference(x, self.gamma, self.beta,
                                      self.moving_mean, self.moving_variance,
                                      self.epsilon)
    momentum = self.momentum
    count = self._reestimate_count
    if count is not None:
      momentum = count / (count + 1.0)  # running mean: 0, 1/2, 2/3, ...
    y, mean, variance = ops.batch_norm_training(
        x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
        momentum, self.epsilon)
    self.moving_mean.assign(mean)
    self.moving_variance.assign(variance)
    return y

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "momentum": self.momentum,
            "epsilon": self.epsilon}


def start_reestimation(bn_layers, count):
  """Makes every BatchNorm in `bn_layers` average batch statistics."""
  for layer in bn_layers:
    object.__setattr__(layer, "_reestimate_count", count)


def stop_reestimation(bn_layers):
  for layer in bn_layers:
    object.__setattr__(layer, "_reestimate_count", None)


class ReLU6(keras.layers.Layer):

  def call(self, x):
    return ops.relu6(x)

  def compute_output_shape(self, input_shape):
    return input_shape


class ZeroPadForStride2(keras.layers.Layer):
  """Keras' ZeroPadding2D(correct_pad(...)) before a stride-2 "valid" conv."""

  def __init__(self, kernel_size=3, **kwargs):
    super().__init__(**kwargs)
    self.kernel_size = kernel_size

  def call(self, x):
    return ops.zero_pad_for_stride2(x, self.kernel_size)

  def compute_output_shape(self, input_shape):
    n, h, w, c = input_shape
    if h is None or w is None:
      return (n, None if h is None else h + 1 + h % 2,
              None if w is None else w + 1 + w % 2, c)
    (t, b), (l, r) = arch.correct_pad(h, w, self.kernel_size)
    return (n, h + t + b, w + l + r, c)

  def get_config(self):
    return {**super().get_config(), "kernel_size": self.kernel_size}


class Add(keras.layers.Layer):
  """The residual connection of an inverted residual block."""

  def call(self, inputs):
    a, b = inputs
    return a + b

  def compute_output_shape(self, input_shape):
    return input_shape[0]


class GlobalPool(keras.layers.Layer):

  def __init__(self, mode="avg", **kwargs):
    super().__init__(**kwargs)
    if mode not in ("avg", "max"):
      raise ValueError(f"pooling must be 'avg' or 'max', got {mode!r}.")
    self.mode = mode

  def call(self, x):
    if self.mode == "avg":
      return ops.global_avg_pool(x)
    return ops.global_max_pool(x)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], input_shape[-1])

  def get_config(self):
    return {**super().get_config(), "mode": self.mode}


class Classifier(keras.layers.Layer):
  """Keras Dense(classes, activation=softmax|None) on ops.dense."""

  def __init__(self, units, activation="softmax", **kwargs):
    super().__init__(**kwargs)
    arch.validate_top(None, activation)
    self.units = units
    self.activation = activation

  def build(self, input_shape):
    self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                  initializer="glorot_uniform", name="kernel")
    self.bias = self.add_weight(shape=(self.units,), initializer="zeros",
                                name="bias")

  def call(self, x):
    y = ops.dense(x, self.kernel, self.bias)
    if self.activation == "softmax":
      y = ops.softmax(y)
    return y

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.units)

  def get_config(self):
    return {**super().get_config(), "units": self.units,
            "activation": self.activation}


CUSTOM_OBJECTS = {c.__name__: c for c in (Conv, BatchNorm, ReLU6,
                                            ZeroPadForStride2, Add, GlobalPool,
                                            Classifier)}
