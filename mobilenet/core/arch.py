"""The single MobileNetV2 architecture table and the network derived from it.

`derive()` reads `BLOCKS`, `STEM` and `HEAD` and returns a `Network`
(network.py) whose `layers` is every Keras layer in execution order: one flat
sequence of `Layer` records named exactly as keras.applications.mobilenet_v2
names them (Keras' naming special cases live here and nowhere else).  Each
builder walks that sequence and maps `Layer.kind` to its own implementation
through a small dispatch table: core/forward.py (raw ops), keras/model.py
(Keras layers), tools/layer_table.py (TFLite ops), tools/model_diagram.py
(drawing).  `stem`, `blocks`, `head` and `classifier` group the same layers
per conv and per block (BN folding, tests).  Channel rounding follows Keras,
so weight files are interchangeable.
"""

import dataclasses
import math
from typing import Iterator, Tuple

# pylint: disable=unused-import
from mobilenet.core.network import (  # re-exported: arch.Network etc.
    LAYER_KINDS, Block, Conv, Dense, Layer, Network, correct_pad)
# pylint: enable=unused-import

# Inverted residual stages (MobileNetV2 paper, table 2):
# (expansion t, output channels c, repeats n, first stride s).
BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# The first and the last conv (+BN +ReLU6): (filters, kernel, stride).
STEM = (32, 3, 2)
HEAD = (1280, 1, 1)

POOLINGS = (None, "avg", "max")
CLASSIFIER_ACTIVATIONS = ("softmax", None, "linear")

# Widths that have official Keras ImageNet weights.
KERAS_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
KERAS_ROWS = (96, 128, 160, 192, 224)
MIN_INPUT_SIZE = 32
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999


def make_divisible(v, divisor=8, min_value=None):
  """Keras' `_make_divisible`: nearest multiple, never more than 10% down."""
  if min_value is None:
    min_value = divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def validate_alpha(alpha):
  if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or (
      not math.isfinite(alpha)) or alpha <= 0:
    raise ValueError(
        f"alpha (width multiplier) must be a positive number, got {alpha!r}; "
        f"Keras ImageNet weights exist for {KERAS_ALPHAS}.")
  return float(alpha)


def validate_input_size(height, width):
  for what, v in (("height", height), ("width", width)):
    if v is None:
      continue
    if not isinstance(v, int) or v < MIN_INPUT_SIZE:
      raise ValueError(
          f"input {what} must be an integer >= {MIN_INPUT_SIZE} (as Keras "
          f"MobileNetV2 requires), got {v!r}.")


def validate_channels(channels):
  if channels not in (1, 3):
    raise ValueError(f"input channels must be 1 or 3, got {channels!r}.")


def validate_top(pooling, classifier_activation):
  if pooling not in POOLINGS:
    raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}.")
  if classifier_activation not in CLASSIFIER_ACTIVATIONS:
    raise ValueError("classifier_activation must be 'softmax' or None (logits),"
                     f" got {classifier_activation!r}.")


def _blocks(alpha, in_ch):
  block_id = 0
  for t, c, n, s in BLOCKS:
    # Keras truncates (int) before rounding to a multiple of 8.
    out_ch = make_divisible(int(c * alpha), 8)
    for i in range(n):
      stride = s if i == 0 else 1
      prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
      expanded = in_ch * t
      expand = None
      if block_id:
        expand = Conv("conv", prefix + "expand", prefix + "expand_BN", in_ch,
                      expanded, 1, 1, prefix + "expand_relu")
      depthwise = Conv("depthwise", prefix + "depthwise",
                       prefix + "depthwise_BN", expanded, expanded, 3, stride,
                       prefix + "depthwise_relu",
                       prefix + "pad" if stride == 2 else None)
      project = Conv("conv", prefix + "project", prefix + "project_BN",
                     expanded, out_ch, 1, 1, None)
      yield Block(block_id, prefix, t, in_ch, expanded, out_ch, stride,
                  in_ch == out_ch and stride == 1, expand, depthwise, project)
      in_ch = out_ch
      block_id += 1


def _top(head, classifier, pooling, classifier_activation):
  """The layers after the last conv, as keras.applications adds them."""
  c = head.out_channels
  if classifier:
    pooling = "avg"  # Keras ignores `pooling` with the classifier
  if not pooling:
    return ()
  # Keras leaves the pool unnamed: these are its automatic names.
  pool = "global_average_pooling2d" if pooling == "avg" else (
      "global_max_pooling2d")
  out = (Layer("pool", pool, pool, c, c, mode=pooling),)
  if classifier:
    n = classifier.name
    out += (Layer("dense", n, n, c, classifier.out_channels),)
    if classifier_activation == "softmax":
      out += (Layer("softmax", n, n, classifier.out_channels,
                    classifier.out_channels),)
  return out


def derive(alpha=1.0, input_channels=3, classes=1000, include_top=True,
           pooling=None, classifier_activation="softmax"):
  """Every layer of MobileNetV2 at width `alpha`, named and sized as Keras.

  `pooling` (no-top only) and `classifier_activation` (top only) choose the
  last layers, as the keras.applications arguments of the same names.
  """
  alpha = validate_alpha(alpha)
  validate_channels(input_channels)
  validate_top(pooling, classifier_activation)
  if include_top and (not isinstance(classes, int) or classes < 1):
    raise ValueError(f"classes must be a positive integer, got {classes!r}.")

  filters, kernel, stride = STEM
  stem = Conv("conv", "Conv1", "bn_Conv1", input_channels,
              make_divisible(filters * alpha, 8), kernel, stride, "Conv1_relu")
  blocks = tuple(_blocks(alpha, stem.out_channels))
  filters, kernel, stride = HEAD
  # The paper keeps the last conv at 1280 for narrow nets, widens for alpha>1.
  last = make_divisible(filters * alpha, 8) if alpha > 1.0 else filters
  head = Conv("conv", "Conv_1", "Conv_1_bn", blocks[-1].out_channels, last,
              kernel, stride, "out_relu")
  classifier = Dense("predictions", last, classes) if include_top else None

  layers = list(stem.layers(stem.name))
  for b in blocks:
    block_input = layers[-1].name
    layers.extend(l for c in b.convs for l in c.layers(b.scope))
    if b.residual:
      layers.append(Layer("add", b.prefix + "add", b.scope, b.out_channels,
                          b.out_channels, shortcut=block_input))
  layers.extend(head.layers(head.name))
  layers.extend(_top(head, classifier, pooling, classifier_activation))
  return Network(alpha, input_channels, stem, blocks, head, classifier,
                 tuple(layers))


# ---- shapes, parameter and MAC counts ----------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One entry of `Network.layers` at a given input size (shapes without the
  batch; (channels,) after the global pool)."""
  name: str
  kind: str
  in_shape: Tuple[int, ...]
  out_shape: Tuple[int, ...]
  kernel: int
  stride: int
  params: int
  macs: int


def layer_costs(net: Network, height=224, width=224) -> Iterator[LayerCost]:
  """Per layer of `net.layers`, in order: shapes, parameters (Keras' count:
  BN's 4 vectors included) and multiply-adds (BN none: it folds into the
  conv for inference)."""
  validate_input_size(height, width)
  shape = (height, width, net.input_channels)
  for layer in net.layers:
    out = layer.output_shape(shape)
    yield LayerCost(layer.name, layer.kind, shape, out, layer.kernel,
                    layer.stride, layer.params, layer.macs(out))
    shape = out


def count_params(net: Network) -> int:
  return sum(layer.params for layer in net.layers)


def count_macs(net: Network, height=224, width=224) -> int:
  return sum(c.macs for c in layer_costs(net, height, width))


def output_spatial_size(net: Network, height, width):
  """Spatial size of the final feature map (before pooling)."""
  for c in layer_costs(net, height, width):
    if len(c.out_shape) == 3:
      height, width = c.out_shape[:2]
  return height, width
