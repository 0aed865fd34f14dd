"""Quantization-aware training: fake quantization for the raw-op forward.

Both builders call these functions from their per-kind dispatch (forward.py
through `Hooks`, keras/qat_layers.py), so the QAT network is the one of the
architecture table with hooks, never a second copy.

What is simulated is what TFLite's full-integer kernels compute:
  * conv + BN (+ ReLU6) is one int8 op whose weights are the BN-folded
    kernel, quantized symmetric in [-127, 127] per output channel
    (default) or per tensor; the bias is int32 and not simulated (its
    rounding is below one output step).
  * BN folding (Jacob et al. 2018, the recipe TFLite's QAT follows): while
    training, the kernel is folded with the *batch* statistics of the float
    conv output, so the quantized weights are those of the normalized
    layer; in inference mode, for a frozen BN (trainable=False) and after
    the BN freeze (`bn_statistics`), with the moving statistics - what the
    export folds.
  * Activations are quantized where the int8 graph has a tensor of its own
    (`quant_points`): the input, each conv unit's output (after ReLU6 when it
    has one), each residual ADD, the pooled features and the logits.  Their
    range is an exponential moving average of the batch min/max, widened to
    contain 0 as TFLite's quantization parameters always do; a range never
    seen (width 0) leaves the tensor unquantized.
  * Gradients are straight-through: tf.quantization.fake_quant_* pass the
    gradient inside the range and zero outside.

tf.quantization's nudging matches TFLite's quantization parameters: for a
range [lo, hi] containing 0, scale = (hi - lo) / 255 and the zero point is
round(-lo / scale) (uint8; minus 128 in int8), the value the converter
derives from the same FakeQuant range (docs/qat.md).
"""

import dataclasses

import tensorflow as tf

from mobilenet.core import ops

GRANULARITIES = ("per_channel", "per_tensor")
# EMA momentum of the activation ranges (tf.contrib.quantize and
# tensorflow-model-optimization use 0.999 for long ImageNet runs; short
# fine-tuning runs need the ranges to follow the weights faster).
RANGE_MOMENTUM = 0.99
INPUT = "input"  # the name of the network input's quantization point
_TINY = 1e-8


def validate_granularity(granularity):
  if granularity not in GRANULARITIES:
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got "
                     f"{granularity!r}.")
  return granularity


def quant_points(net):
  """Names of the layers of `net` (arch.Network) whose output is a tensor
  of its own in TFLite's int8 graph, after INPUT: a conv unit's last layer
  (its ReLU6, or its BN without one), each ADD, the pool and the dense
  layer.  Softmax has TFLite's fixed output range (1/256, -128)."""
  layers = net.layers
  points = [INPUT]
  for i, layer in enumerate(layers):
    following = layers[i + 1].kind if i + 1 < len(layers) else None
    if layer.kind in ("relu6", "add", "pool", "dense") or (
        layer.kind == "bn" and following != "relu6"):
      points.append(layer.name)
  return tuple(points)


# ---- weights -----------------------------------------------------------------


def _channel_axis(kind):
  # conv kernels are (k, k, in, out); depthwise (k, k, channels, 1).
  return 2 if kind == "depthwise" else 3


def fold_kernel(kernel, kind, scale):
  """`kernel` times the per-output-channel BN scale gamma/sqrt(var+eps)."""
  if kind == "depthwise":
    return kernel * scale[:, None]
  return kernel * scale


def quantize_kernel(kernel, kind, granularity="per_channel"):
  """Fake-quantizes a conv/depthwise/dense kernel as TFLite's int8 weights:
  symmetric, narrow range [-127, 127], scale max|w| / 127 per output
  channel or per tensor.  The range is the weights' own (no gradient)."""
  validate_granularity(granularity)
  kernel = tf.convert_to_tensor(kernel)
  if granularity == "per_tensor":
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel)), _TINY))
    return tf.quantization.fake_quant_with_min_max_vars(
        kernel, -m, m, num_bits=8, narrow_range=True)
  if kind == "depthwise":  # the per-channel op quantizes the last axis
    k = kernel[..., 0]
    return quantize_kernel(k, "conv", granularity)[..., None]
  axes = list(range(kernel.shape.rank - 1))
  m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axes), _TINY))
  return tf.quantization.fake_quant_with_min_max_vars_per_channel(
      kernel, -m, m, num_bits=8, narrow_range=True)


def quantize_params(folded, net, granularity):
  """Folded params (params.fold_batch_norm) with every kernel on its int8
  grid, as numpy: the export graph's constants.  The converter derives
  the same scales from them (max|w| / 127 of a grid kernel is its scale)
  and quantizes them exactly; a FakeQuant op in the graph would not do for
  depthwise kernels, whose per-channel axis the converter moves when it
  reshapes them to TFLite's layout."""
  kinds = {l.name: l.kind for l in net.layers}
  out = {}
  for name, weights in folded.items():
    out[name] = dict(weights)
    for key in ("kernel", "depthwise_kernel"):
      if key in weights:
        out[name][key] = quantize_kernel(
            tf.constant(weights[key], tf.float32), kinds[name],
            granularity).numpy()
  return out


def batch_moments(x):
  """Per-channel (mean, biased variance) of a conv output, gradients
  through both; the global batch's under a tf.distribute strategy with
  several replicas (as layers.BatchNorm)."""
  ctx = ops.sync_replica_context()
  if ctx is None:
    return tf.nn.moments(x, axes=[0, 1, 2])
  c = x.shape[-1]
  zeros, ones = tf.zeros([c]), tf.ones([c])
  # momentum 0: the "moving" values returned are the batch's own.
  _, mean, variance = ops.sync_batch_norm_training(
      x, ones, zeros, zeros, ones, 0.0, replica_context=ctx)
  return mean, variance


def bn_statistics(conv_out, moving_mean, moving_variance, momentum,
                  frozen=False):
  """(mean, variance) a training fold uses and the moving statistics after
  the batch `conv_out`: the batch's (batch_moments) and their EMA; once
  `frozen` (a bool or a scalar bool tensor: TFLite's BN freeze) the moving
  ones, returned unchanged, so the fold is the inference one."""
  if frozen is True:
    return moving_mean, moving_variance, moving_mean, moving_variance
  mean, variance = batch_moments(conv_out)
  new_mean = moving_mean * momentum + mean * (1.0 - momentum)
  new_variance = moving_variance * momentum + variance * (1.0 - momentum)
  if frozen is False:
    return mean, variance, new_mean, new_variance
  # The batch moments still run: under a strategy every replica then
  # issues the same collectives whatever the value.
  return (tf.where(frozen, moving_mean, mean),
          tf.where(frozen, moving_variance, variance),
          tf.where(frozen, moving_mean, new_mean),
          tf.where(frozen, moving_variance, new_variance))


def folded_conv(x, kernel, kind, stride, padding, gamma, beta, mean,
                variance, epsilon, granularity):
  """conv(x, fake-quantized BN-folded kernel) + folded bias: the int8
  conv+BN op in float.  `padding` "SAME"/"VALID" (the caller pads)."""
  scale = gamma * tf.math.rsqrt(variance + epsilon)
  w = quantize_kernel(fold_kernel(kernel, kind, scale), kind, granularity)
  bias = beta - mean * scale
  if kind == "depthwise":
    return ops.depthwise_conv2d(x, w, bias, stride, padding)
  return ops.conv2d(x, w, bias, stride, padding)


# ---- activations ----------------------------------------------------------


def batch_range(x):
  """[min, max] of `x` widened to contain 0; under a strategy with several
  replicas, the mean of the replicas' (as tensorflow-model-optimization's
  MirroredStrategy support does): every replica gets the same value."""
  r = tf.stack([tf.minimum(tf.reduce_min(x), 0.0),
                tf.maximum(tf.reduce_max(x), 0.0)])
  ctx = ops.sync_replica_context()
  if ctx is not None:
    r = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, r)
  return tf.stop_gradient(r)


def updated_range(old, x, momentum=RANGE_MOMENTUM):
  """The EMA of the batch ranges after batch `x`; a range not seen yet
  (width 0) becomes the batch's."""
  batch = batch_range(x)
  unset = old[1] - old[0] <= 0.0
  return tf.where(unset, batch, old * momentum + batch * (1.0 - momentum))


def fake_quant(x, value_range):
  """`x` through uint8/int8 fake quantization over `value_range` [min, max]
  (8 bits, full range, TFLite's nudging); unchanged while the range is
  unset (width 0)."""
  value_range = tf.convert_to_tensor(value_range, tf.float32)
  lo, hi = value_range[0], value_range[1]
  q = tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)
  return tf.cond(hi - lo > 0.0, lambda: q, lambda: tf.identity(x))


def fake_quant_fixed(x, value_range):
  """`fake_quant` for a known, set range (the export graph: a plain
  FakeQuantWithMinMaxVars the TFLite converter reads its range from)."""
  lo, hi = (float(v) for v in value_range)
  return tf.quantization.fake_quant_with_min_max_vars(
      x, tf.constant(lo), tf.constant(hi), num_bits=8)


@dataclasses.dataclass
class Options:
  """The QAT option of forward.apply: weight granularity, the activation
  ranges by quant point name ([min, max] arrays, tensors or variables; a
  point missing from `ranges` counts as unset) and `freeze_bn` (a bool or
  scalar bool tensor): training folds with the moving statistics and
  leaves them (bn_statistics)."""
  granularity: str = "per_channel"
  ranges: dict = dataclasses.field(default_factory=dict)
  momentum: float = RANGE_MOMENTUM
  freeze_bn: object = False


class Hooks:
  """What forward.apply's layer kinds call with qat=Options: one pass's
  quant points, the conv before each BN (the BN folds it) and, in
  training, the updated ranges.  `mode` is forward's: "training",
  "inference" or "folded" (the export graph: grid kernels, fixed ranges)."""

  def __init__(self, options, mode, net):
    validate_granularity(options.granularity)
    self.options = options
    self.mode = mode
    self.points = set(quant_points(net))
    self.new_ranges = {}
    self._conv = None  # unfolded: (layer, input, padding) of the last conv

  def activation(self, layer, x):
    """`x` fake-quantized if `layer` ends an int8 tensor."""
    # (softmax shares the dense layer's name, not its quant point)
    if layer.name in self.points and layer.kind != "softmax":
      return self.quantize(layer.name, x)
    return x

  def quantize(self, name, x):
    old = self.options.ranges.get(name)
    if self.mode == "folded":
      return fake_quant_fixed(x, old)  # export: a constant range
    if old is None:
      old = tf.zeros([2])
    if self.mode == "training":
      old = self.new_ranges[name] = updated_range(old, x,
                                                  self.options.momentum)
    return fake_quant(x, old)

  def conv_kernel(self, layer, x, padding, kernel):
    """The kernel the conv runs: unfolded, the float one (its output gives
    the BN statistics; the BN runs the folded conv); folded per-tensor, a
    FakeQuant (a no-op on grid kernels, quantize_params) that keeps the
    converter from picking per-channel scales."""
    if self.mode != "folded":
      self._conv = (layer, x, padding)
    elif self.options.granularity == "per_tensor":
      kernel = quantize_kernel(kernel, layer.kind, "per_tensor")
    return kernel

  def bn(self, layer, x, bn, params, new_stats):
    """The conv before this BN again, with the folded fake-quantized
    kernel (`x`, the float conv's output, gives the batch statistics)."""
    conv, conv_x, padding = self._conv
    mean, variance = bn["moving_mean"], bn["moving_variance"]
    if self.mode == "training":
      mean, variance, new_mean, new_variance = bn_statistics(
          x, mean, variance, ops.BN_MOMENTUM, self.options.freeze_bn)
      new_stats[layer.name] = {"moving_mean": new_mean,
                               "moving_variance": new_variance}
    kernel = params[conv.name][
        "depthwise_kernel" if conv.kind == "depthwise" else "kernel"]
    return folded_conv(conv_x, kernel, conv.kind, conv.stride, padding,
                       bn["gamma"], bn["beta"], mean, variance,
                       ops.BN_EPSILON, self.options.granularity)

  def dense_kernel(self, kernel):
    # Folded: grid kernels already; per-tensor, the FakeQuant keeps the
    # converter from picking per-channel scales (as conv_kernel).
    if self.mode != "folded" or self.options.granularity == "per_tensor":
      return quantize_kernel(kernel, "dense", self.options.granularity)
    return kernel
