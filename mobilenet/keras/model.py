"""`MobileNetV2(...)`: keras.applications' signature, layers on the core ops.

The network is `Network.layers` of `arch.derive()` (the single table); each
entry becomes a subclassed Layer from layers.py (`_KINDS`) named like its
keras.applications twin, so `get_layer("block_3_expand_BN")`, `get_weights()`
/ `set_weights()` and the legacy weight files all line up with
keras.applications.MobileNetV2.
"""

import keras
import numpy as np

from mobilenet.core import arch
from mobilenet.core import model_source
from mobilenet.core import qat as qat_lib
from mobilenet.keras import layers as L
from mobilenet.keras import qat_layers


def _input_shape(input_shape, input_tensor, include_top, weights, channels):
  if input_shape is None and input_tensor is not None:
    shape = tuple(input_tensor.shape)
    if len(shape) == 4:
      input_shape = shape[1:]
  if input_shape is None:
    if include_top or weights == "imagenet":
      input_shape = (224, 224, channels)
    else:
      input_shape = (None, None, channels)
  input_shape = tuple(input_shape)
  if len(input_shape) != 3:
    raise ValueError("input_shape must be (height, width, channels), got "
                     f"{input_shape!r}.")
  h, w, c = input_shape
  arch.validate_input_size(h, w)
  arch.validate_channels(c)
  return input_shape


def _conv(l, o):
  del o
  return L.Conv(l.kind, l.out_channels, l.kernel, l.stride, l.padding,
                name=l.name)


# arch.Layer.kind -> (layer, options) -> the layers.py layer for it; None when
# the Keras layer before it does the work.
_KINDS = {
    "pad": lambda l, o: L.ZeroPadForStride2(l.kernel, name=l.name),
    "conv": _conv,
    "depthwise": _conv,
    "bn": lambda l, o: L.BatchNorm(o["bn_momentum"], name=l.name),
    "relu6": lambda l, o: L.ReLU6(name=l.name),
    "add": lambda l, o: L.Add(name=l.name),
    "pool": lambda l, o: L.GlobalPool(l.mode, name=l.name),
    "dense": lambda l, o: L.Classifier(l.out_channels,
                                       o["classifier_activation"],
                                       name=l.name),
    "softmax": None,  # Keras' Dense("predictions", activation) applies it
}


def _build(net, inputs, **options):
  """Calls one Keras layer per entry of `net.layers` (see `_KINDS`).  With
  options["qat"] (a granularity) each BN is a QatBatchNorm on [conv input,
  conv output] and every qat.quant_points tensor gets an ActivationQuant."""
  granularity = options.get("qat")
  points = set(qat_lib.quant_points(net)) if granularity else set()
  conv = {}

  def quantize(name, x):
    return qat_layers.ActivationQuant(name=name + "_quant")(x)

  def call(layer, x):
    make = _KINDS[layer.kind]
    if make is None:
      y = x
    elif granularity and layer.kind == "bn":
      y = qat_layers.QatBatchNorm(conv["layer"], granularity,
                                  momentum=options["bn_momentum"],
                                  name=layer.name)([conv["input"], x])
    elif granularity and layer.kind == "dense":
      y = qat_layers.QatClassifier(layer.out_channels, granularity,
                                   name=layer.name)(x)
    else:
      keras_layer = make(layer, options)
      y = keras_layer(x)
      if layer.kind in ("conv", "depthwise"):
        conv.update(layer=keras_layer, input=x)
    # (softmax shares the dense layer's name, not its quant point)
    if layer.name in points and layer.kind != "softmax":
      return quantize(layer.name, y)
    return y

  if granularity:
    inputs = quantize(qat_lib.INPUT, inputs)
  return net.run(inputs, call)


def _weights_source(weights, alpha, input_shape, include_top):
  if weights == "imagenet":
    rows = input_shape[0] if input_shape and input_shape[0] == input_shape[1] \
        else None
    return model_source.resolve("imagenet", alpha=alpha, input_size=rows,
                                include_top=include_top)
  return model_source.resolve(weights, alpha=alpha, include_top=include_top)


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True,  # pylint: disable=invalid-name
                weights="imagenet", input_tensor=None, pooling=None,
                classes=1000, classifier_activation="softmax", name=None, *,
                bn_momentum=arch.BN_MOMENTUM, qat=None):
  """keras.applications.MobileNetV2 on the core raw ops.

  Arguments as keras.applications; `weights` is None (random init),
  "imagenet" or the path of an official Keras .h5 or of one of our
  checkpoints (.h5 with its .json sidecar, or the .json).  With a
  checkpoint, input_shape=None takes its input size and channel count.
  `bn_momentum` sets every BatchNorm's moving-average momentum (Keras:
  0.999).  `qat` "per_channel"|"per_tensor": quantization-aware training
  (qat_layers.py; weights of that granularity; logits only:
  classifier_activation=None); `qat_ranges(model)` reads the learned
  activation ranges.
  """
  alpha = arch.validate_alpha(alpha)
  arch.validate_top(pooling, classifier_activation)
  source = None
  if weights is not None:
    if not isinstance(weights, str):
      raise ValueError("weights must be None, 'imagenet' or a file path, got "
                       f"{weights!r}.")
    if weights == "imagenet" and include_top and classes != 1000:
      raise ValueError("weights='imagenet' with include_top=True needs "
                       f"classes=1000, got {classes}.")
    shape_hint = input_shape
    if shape_hint is None and input_tensor is not None:
      shape_hint = tuple(input_tensor.shape)[1:]
    source = _weights_source(weights, alpha, shape_hint, include_top)
    if include_top and source.classes != classes:
      raise ValueError(f"{source.description} has {source.classes} classes but"
                       f" classes={classes}; pass classes={source.classes}.")
    if input_shape is None and input_tensor is None and weights != "imagenet":
      input_shape = source.input_shape
  channels = source.channels if source is not None else 3
  input_shape = _input_shape(input_shape, input_tensor, include_top, weights,
                             channels)
  if source is not None and input_shape[-1] != source.channels:
    raise ValueError(f"{source.description} takes {source.channels}-channel "
                     f"input, but input_shape has {input_shape[-1]} channels.")

  if input_tensor is None:
    img_input = keras.Input(shape=input_shape)
  elif not keras.backend.is_keras_tensor(input_tensor):
    img_input = keras.Input(tensor=input_tensor, shape=input_shape)
  else:
    img_input = input_tensor

  net = arch.derive(alpha, input_shape[-1], classes, include_top, pooling,
                    classifier_activation)
  if qat is not None:
    qat_lib.validate_granularity(qat)
    if include_top and classifier_activation is not None:
      raise ValueError("qat trains on the logits (a quant point; TFLite's "
                       "int8 softmax has a fixed range): pass "
                       "classifier_activation=None.")
  x = _build(net, img_input, bn_momentum=bn_momentum,
             classifier_activation=classifier_activation, qat=qat)

  inputs = (keras.utils.get_source_inputs(input_tensor)
            if input_tensor is not None else img_input)
  if name is None:
    name = f"mobilenetv2_{alpha:0.2f}_{input_shape[0]}"
  model = keras.Model(inputs, x, name=name)
  model.mobilenet_network = net
  model.qat_granularity = qat
  if source is not None:
    set_params(model, source.params)
  return model


def network(model):
  """The arch.Network a MobileNetV2 model was built from."""
  return model.mobilenet_network


def _param_layers(model):
  """(Keras layer, params keys in variable order) for each weighted layer."""
  for layer in model.layers:
    if isinstance(layer, L.Conv):
      key = "depthwise_kernel" if layer.kind == "depthwise" else "kernel"
      yield layer, (key,)
    elif isinstance(layer, L.BatchNorm):
      yield layer, ("gamma", "beta", "moving_mean", "moving_variance")
    elif isinstance(layer, L.Classifier):
      yield layer, ("kernel", "bias")


def get_params(model):
  """The model's weights as a core params dict (numpy arrays)."""
  return {layer.name: dict(zip(keys, (np.asarray(w) for w in
                                      layer.get_weights())))
          for layer, keys in _param_layers(model)}


def set_params(model, params):
  """Loads a core params dict (keyed by Keras layer name) into the model."""
  for layer, keys in _param_layers(model):
    if layer.name not in params:
      raise ValueError(f"params lack layer '{layer.name}'.")
    layer.set_weights([np.asarray(params[layer.name][k]) for k in keys])


def batch_norm_layers(model):
  return [layer for layer in model.layers if isinstance(layer, L.BatchNorm)]


def qat_ranges(model):
  """{quant point name: [min, max]} of a MobileNetV2(qat=...) model."""
  suffix = "_quant"
  return {layer.name[:-len(suffix)]: [float(v) for v in
                                      np.asarray(layer.range)]
          for layer in model.layers
          if isinstance(layer, qat_layers.ActivationQuant)}
