"""Bare-metal MobileNetV2 forward pass on tf.nn ops: `Network.layers` of
arch.derive(), one raw-op implementation per layer kind (`_KINDS`).

Two entry points:
  * `forward(params, images, ...)`: a tf.function over a params structure
    (numpy arrays, tensors or tf.Variables) and an NHWC float batch.  With
    `training=True` it normalizes with batch statistics and returns
    `(outputs, new_bn_stats)`; feed `new_bn_stats` to
    `params.with_bn_stats` (or assign into variables) to apply the update.
  * With `qat=qat.Options(...)` the same layers run with fake quantization
    (core/qat.py): BN folded into fake-quantized kernels (batch statistics
    in training, moving ones otherwise; `folded=True` params are folded
    already: the export graph) and activations fake-quantized at
    qat.quant_points; training then also returns the updated ranges.
  * `build(...)`: a `Model` with weights baked in as graph constants, BN folded
    by default, and a fixed `input_signature` (the fast inference path and
    what TFLite converters consume via `get_concrete_function()`).
"""

import math

import tensorflow as tf

from mobilenet.core import arch
from mobilenet.core import ops
from mobilenet.core import params as params_lib
from mobilenet.core import qat as qat_lib

class _Run:
  """One pass of `apply`: its params, its BN mode ("inference", "training"
  or "folded"), in training the new BN statistics, and with QAT the hooks
  (qat.Hooks) the layer kinds call."""

  def __init__(self, params, mode, qat=None, observe=None):
    self.params = params
    self.mode = mode
    self.new_stats = {}
    self.qat = qat
    self.observe = observe

  def __call__(self, layer, x):
    x = _KINDS[layer.kind](self, layer, x)
    if self.qat is not None:
      x = self.qat.activation(layer, x)
    if self.observe is not None:
      self.observe(layer, x)
    return x


def _conv(run, layer, x):
  padding = "SAME"
  if layer.padding == "valid":
    # Keras pads in a layer of its own before a "valid" conv (see "pad"
    # below); here the conv pads.  For a 3x3/2 conv Keras' correct_pad equals
    # SAME whenever the size is known, which saves a Pad op per stride-2
    # block.
    if not ops.pad_matches_same(x.shape[1], x.shape[2], layer.kernel,
                                layer.stride):
      x = ops.zero_pad_for_stride2(x, layer.kernel)
      padding = "VALID"
  weights = run.params[layer.name]
  bias = weights["bias"] if run.mode == "folded" else None
  key = "depthwise_kernel" if layer.kind == "depthwise" else "kernel"
  kernel = weights[key]
  if run.qat is not None:
    kernel = run.qat.conv_kernel(layer, x, padding, kernel)
  if layer.kind == "depthwise":
    return ops.depthwise_conv2d(x, kernel, bias, layer.stride, padding)
  return ops.conv2d(x, kernel, bias, layer.stride, padding)


def _bn(run, layer, x):
  if run.mode == "folded":
    return x  # in the conv's kernel and bias (params.fold_batch_norm)
  bn = run.params[layer.name]
  if run.qat is not None:
    return run.qat.bn(layer, x, bn, run.params, run.new_stats)
  if run.mode == "inference":
    return ops.batch_norm_inference(x, bn["gamma"], bn["beta"],
                                    bn["moving_mean"], bn["moving_variance"])
  x, mean, var = ops.batch_norm_training(x, bn["gamma"], bn["beta"],
                                         bn["moving_mean"],
                                         bn["moving_variance"])
  run.new_stats[layer.name] = {"moving_mean": mean, "moving_variance": var}
  return x


def _dense(run, layer, x):
  d = run.params[layer.name]
  kernel = d["kernel"]
  if run.qat is not None:
    kernel = run.qat.dense_kernel(kernel)
  return ops.dense(x, kernel, d["bias"])


# arch.Layer.kind -> raw-op implementation (run, layer, x) -> output.
_KINDS = {
    "pad": lambda run, layer, x: x,  # done by the "valid" conv: see _conv
    "conv": _conv,
    "depthwise": _conv,
    "bn": _bn,
    "relu6": lambda run, layer, x: ops.relu6(x),
    "add": lambda run, layer, xs: xs[0] + xs[1],
    "pool": lambda run, layer, x: (ops.global_avg_pool(x) if layer.mode ==
                                   "avg" else ops.global_max_pool(x)),
    "dense": _dense,
    "softmax": lambda run, layer, x: ops.softmax(x),
}


def apply(params, images, *, alpha=1.0, include_top=True, pooling=None,
          classifier_activation="softmax", training=False, folded=False,
          qat=None, observe=None):
  """Python (trace-time) body of `forward`; usable eagerly or in a graph.

  `params` is keyed by Keras layer name (see params.py); `folded=True` means
  it comes from params.fold_batch_norm.  `classes` and input channels are
  read from the shapes of `params` / `images`.  `qat` (a qat.Options)
  fake-quantizes (module docstring); with `training` the result is then
  (outputs, new_bn_stats, new_ranges).  `observe(layer, output)` is called
  after each arch.Layer (equalize.py reads activations through it).
  """
  arch.validate_top(pooling, classifier_activation)
  if training and folded:
    raise ValueError("training=True needs unfolded params (BN statistics); "
                     "folded params are for inference only.")
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4:
    raise ValueError(f"images must be NHWC (rank 4), got shape {images.shape}.")
  arch.validate_input_size(images.shape[1], images.shape[2])
  classes = 1
  if include_top:
    if "predictions" not in params:
      raise ValueError("include_top=True but params has no 'predictions' "
                       "layer (no-top weights?).")
    classes = int(params["predictions"]["kernel"].shape[-1])
  net = arch.derive(alpha, images.shape[-1], classes, include_top, pooling,
                    classifier_activation)
  if not folded:
    params_lib.check(params, net)  # trace time only: names the bad layer
  mode = "folded" if folded else ("training" if training else "inference")
  hooks = None if qat is None else qat_lib.Hooks(qat, mode, net)
  run = _Run(params, mode, hooks, observe)
  x = tf.cast(images, tf.float32)
  if hooks is not None:
    x = hooks.quantize(qat_lib.INPUT, x)
  x = net.run(x, run)
  if training and hooks is not None:
    return x, run.new_stats, hooks.new_ranges
  if training:
    return x, run.new_stats
  return x


forward = tf.function(apply)
forward.__doc__ = apply.__doc__


def _default_rows(input_shape):
  """Keras' rule for which ImageNet file a given input shape loads."""
  rows, cols = input_shape[0], input_shape[1]
  if rows == cols and rows in arch.KERAS_ROWS:
    return rows
  return 224


# Largest single activation of one chunk of a batch.  Running a big batch as
# independent chunks whose activations stay cache-sized (L3 is a few tens of
# MB on the CPUs we target) was measured ~1.9x faster at batch 32, 224 px,
# alpha 1.0 (chunks of 4 images); smaller chunks pay per-op overhead.
_CHUNK_ACTIVATION_BYTES = 20e6


def _peak_activation_bytes(net, height, width):
  """Bytes of the largest conv output of one image (float32)."""
  return max(4 * math.prod(c.out_shape)
             for c in arch.layer_costs(net, height, width)
             if c.kind in ("conv", "depthwise"))


def _chunk_sizes(net, batch, height, width):
  """How `Model` splits a static batch: near-equal chunks (or one)."""
  if batch is None or batch <= 1:
    return [batch]
  per_chunk = max(1, int(_CHUNK_ACTIVATION_BYTES //
                         _peak_activation_bytes(net, height, width)))
  count = -(-batch // per_chunk)
  return [batch // count + (i < batch % count) for i in range(count)]


class Model(tf.Module):
  """MobileNetV2 with baked-in weights and a fixed input signature.

  A large static batch runs as independent chunks (see `_chunk_sizes`); each
  image's result is the same as when run alone.
  """

  def __init__(self, params, *, alpha, input_shape, batch_size, include_top,
               pooling, classifier_activation, fold_bn, name=None, qat=None):
    super().__init__(name=name or f"mobilenetv2_{int(round(alpha * 100)):03d}")
    h, w, c = input_shape
    self.alpha = alpha
    self.input_shape = (batch_size, h, w, c)
    self.include_top = include_top
    self.pooling = pooling
    self.classifier_activation = classifier_activation
    self.folded = fold_bn
    self.qat = qat  # qat.Options: the export graph of a QAT model
    net = arch.derive(alpha, c,
                      params["predictions"]["kernel"].shape[-1]
                      if include_top else 1, include_top, pooling,
                      classifier_activation)
    self.network = net
    params_lib.check(params, net)
    numpy_params = params_lib.to_numpy(params_lib.select(params, net))
    self.params = numpy_params
    self._graph_params = (params_lib.fold_batch_norm(numpy_params, net)
                          if fold_bn else numpy_params)
    if qat is not None:
      if not fold_bn:
        raise ValueError("a QAT graph (qat=...) needs fold_bn=True.")
      self._graph_params = qat_lib.quantize_params(self._graph_params,
                                                   net, qat.granularity)
    signature = [tf.TensorSpec(self.input_shape, tf.float32, name="images")]
    # Numpy weights become Const nodes inside the graph: grappler can then
    # fuse conv+bias+relu6 and TFLite converters need no variable freezing.
    self._fn = tf.function(self._call, input_signature=signature,
                           autograph=False)

  def _call(self, images):
    sizes = _chunk_sizes(self.network, *self.input_shape[:3])
    if len(sizes) == 1:
      return self._apply(self._graph_params, images)
    # One Const node per weight, shared by every chunk's ops.
    params = tf.nest.map_structure(tf.constant, self._graph_params)
    return tf.concat([self._apply(params, chunk)
                      for chunk in tf.split(images, sizes)], axis=0)

  def _apply(self, params, images):
    return apply(params, images, alpha=self.alpha,
                 include_top=self.include_top, pooling=self.pooling,
                 classifier_activation=self.classifier_activation,
                 folded=self.folded, qat=self.qat)

  def __call__(self, images):
    return self._fn(images)

  def get_concrete_function(self):
    return self._fn.get_concrete_function()


def build(params=None, *, alpha=1.0, input_shape=(224, 224, 3), batch_size=1,
          classes=1000, include_top=True, pooling=None,
          classifier_activation="softmax", weights=None, fold_bn=True,
          seed=0, cache_dir=None, qat=None):
  """A ready-to-call MobileNetV2.

  Weights come from `params` (a params structure), else `weights`:
  None (Keras-style random init with `seed`), "imagenet" (official Keras
  file via the Keras cache, see weights.py) or a path to a legacy Keras .h5.
  `batch_size=None` gives a dynamic batch dimension; `cache_dir` overrides
  the Keras cache root (default $KERAS_HOME or ~/.keras) for "imagenet".
  `qat` (a qat.Options with every range set, fold_bn=True): fake-quant ops
  with those ranges, which the TFLite converter turns into int8 without a
  representative dataset.
  """
  alpha = arch.validate_alpha(alpha)
  if len(input_shape) != 3:
    raise ValueError(f"input_shape must be (height, width, channels), got "
                     f"{input_shape!r}.")
  h, w, c = input_shape
  arch.validate_input_size(h, w)
  arch.validate_channels(c)
  arch.validate_top(pooling, classifier_activation)
  if params is not None and weights is not None:
    raise ValueError("pass either params or weights, not both.")
  net = arch.derive(alpha, c, classes, include_top)
  if params is None:
    if weights is None:
      params = params_lib.init(net, seed)
    elif weights == "imagenet":
      from mobilenet.core import weights as weights_lib  # pylint: disable=g-import-not-at-top
      if include_top and classes != 1000:
        raise ValueError("weights='imagenet' with include_top=True needs "
                         f"classes=1000, got {classes}.")
      if c != 3:
        raise ValueError("weights='imagenet' needs 3 input channels.")
      params = weights_lib.load_imagenet(alpha, _default_rows(input_shape),
                                         include_top, cache_dir)
    else:
      params = params_lib.load_h5(weights, net)
  return Model(params, alpha=alpha, input_shape=(h, w, c),
               batch_size=batch_size, include_top=include_top,
               pooling=pooling, classifier_activation=classifier_activation,
               fold_bn=fold_bn, qat=qat)


def get_concrete_function(params=None, **kwargs):
  """`build(params, **kwargs).get_concrete_function()` (e.g. for TFLite)."""
  return build(params, **kwargs).get_concrete_function()
