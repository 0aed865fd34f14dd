"""The single MobileNetV2 architecture table and everything derived from it.

Every builder (raw-op forward, Keras-layer builder, layer-table tool) reads
`BLOCKS`, `STEM` and `HEAD` through `derive()`; nobody writes the network out
a second time.  Channel rounding and layer names follow
keras.applications.mobilenet_v2 exactly so weight files are interchangeable.
"""

import dataclasses
import math
from typing import Iterator, Optional, Tuple

# Block specs as data, in the spirit of TF-Models' MobileNet backbone table:
# (block kind, expansion t, output channels c, repeats n, first stride s).
BLOCKS = (
    ("invertedbottleneck", 1, 16, 1, 1),
    ("invertedbottleneck", 6, 24, 2, 2),
    ("invertedbottleneck", 6, 32, 3, 2),
    ("invertedbottleneck", 6, 64, 4, 2),
    ("invertedbottleneck", 6, 96, 3, 1),
    ("invertedbottleneck", 6, 160, 3, 2),
    ("invertedbottleneck", 6, 320, 1, 1),
)
# (kind, filters, kernel, stride)
STEM = ("convbn", 32, 3, 2)
HEAD = ("convbn", 1280, 1, 1)

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


@dataclasses.dataclass(frozen=True)
class Conv:
  """A conv (kind "conv") or depthwise conv (kind "depthwise") + BN (+relu6).

  `pad_name` is set when Keras puts an explicit ZeroPadding2D
  (`imagenet_utils.correct_pad`) before a "valid" stride-2 depthwise conv.
  """
  kind: str
  name: str
  bn_name: str
  in_channels: int
  out_channels: int
  kernel: int
  stride: int
  relu6: bool
  pad_name: Optional[str] = None

  @property
  def weight_shapes(self):
    k = self.kernel
    if self.kind == "depthwise":
      return {"depthwise_kernel": (k, k, self.in_channels, 1)}
    return {"kernel": (k, k, self.in_channels, self.out_channels)}


@dataclasses.dataclass(frozen=True)
class Block:
  """One inverted residual block; `expand` is None for the first (t=1)."""
  block_id: int
  prefix: str
  expansion: int
  in_channels: int
  expanded_channels: int
  out_channels: int
  stride: int
  residual: bool
  expand: Optional[Conv]
  depthwise: Conv
  project: Conv

  @property
  def convs(self) -> Tuple[Conv, ...]:
    return tuple(c for c in (self.expand, self.depthwise, self.project)
                 if c is not None)


@dataclasses.dataclass(frozen=True)
class Dense:
  name: str
  in_channels: int
  out_channels: int

  @property
  def weight_shapes(self):
    return {"kernel": (self.in_channels, self.out_channels),
            "bias": (self.out_channels,)}


@dataclasses.dataclass(frozen=True)
class Network:
  alpha: float
  input_channels: int
  stem: Conv
  blocks: Tuple[Block, ...]
  head: Conv
  classifier: Optional[Dense]

  @property
  def convs(self) -> Tuple[Conv, ...]:
    out = [self.stem]
    for b in self.blocks:
      out.extend(b.convs)
    out.append(self.head)
    return tuple(out)

  def weight_shapes(self):
    """{Keras layer name: {weight name: shape}} in Keras layer order."""
    shapes = {}
    for c in self.convs:
      shapes[c.name] = c.weight_shapes
      bn = (c.out_channels,)
      shapes[c.bn_name] = {"gamma": bn, "beta": bn, "moving_mean": bn,
                           "moving_variance": bn}
    if self.classifier:
      shapes[self.classifier.name] = self.classifier.weight_shapes
    return shapes

  @property
  def bn_names(self) -> Tuple[str, ...]:
    return tuple(c.bn_name for c in self.convs)


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


def derive(alpha=1.0, input_channels=3, classes=1000, include_top=True):
  """Every layer of MobileNetV2 at width `alpha`, named and sized as Keras."""
  alpha = validate_alpha(alpha)
  validate_channels(input_channels)
  if include_top and (not isinstance(classes, int) or classes < 1):
    raise ValueError(f"classes must be a positive integer, got {classes!r}.")

  _, stem_filters, stem_k, stem_s = STEM
  stem = Conv("conv", "Conv1", "bn_Conv1", input_channels,
              make_divisible(stem_filters * alpha, 8), stem_k, stem_s, True)
  blocks = []
  in_ch = stem.out_channels
  block_id = 0
  for _, t, c, n, s in BLOCKS:
    # Keras truncates (int) before rounding to a multiple of 8.
    out_ch = make_divisible(int(c * alpha), 8)
    for i in range(n):
      stride = s if i == 0 else 1
      prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
      expanded = in_ch * t
      expand = None
      if block_id:
        expand = Conv("conv", prefix + "expand", prefix + "expand_BN", in_ch,
                      expanded, 1, 1, True)
      depthwise = Conv("depthwise", prefix + "depthwise",
                       prefix + "depthwise_BN", expanded, expanded, 3, stride,
                       True, prefix + "pad" if stride == 2 else None)
      project = Conv("conv", prefix + "project", prefix + "project_BN",
                     expanded, out_ch, 1, 1, False)
      blocks.append(Block(block_id, prefix, t, in_ch, expanded, out_ch,
                          stride, in_ch == out_ch and stride == 1, expand,
                          depthwise, project))
      in_ch = out_ch
      block_id += 1

  _, head_filters, head_k, head_s = HEAD
  # The paper keeps the last conv at 1280 for narrow nets, widens for alpha>1.
  last = make_divisible(head_filters * alpha, 8) if alpha > 1.0 else head_filters
  head = Conv("conv", "Conv_1", "Conv_1_bn", in_ch, last, head_k, head_s, True)
  classifier = Dense("predictions", last, classes) if include_top else None
  return Network(alpha, input_channels, stem, tuple(blocks), head, classifier)


# ---- spatial sizes, padding, MAC / parameter counting -----------------------


def correct_pad(height, width, kernel_size=3):
  """`imagenet_utils.correct_pad` for a known spatial size."""
  adjust = (1 - height % 2, 1 - width % 2)
  half = kernel_size // 2
  return ((half - adjust[0], half), (half - adjust[1], half))


def conv_output_size(size, conv: Conv):
  if conv.pad_name:  # explicit correct_pad then VALID
    (top, bottom), _ = correct_pad(size, size, conv.kernel)
    return (size + top + bottom - conv.kernel) // conv.stride + 1
  return -(-size // conv.stride)  # SAME


@dataclasses.dataclass(frozen=True)
class LayerCost:
  name: str
  kind: str
  in_shape: Tuple[int, int, int]
  out_shape: Tuple[int, int, int]
  kernel: int
  stride: int
  params: int
  macs: int


def layer_costs(net: Network, height=224, width=224) -> Iterator[LayerCost]:
  """Per weighted layer: output shape, parameter count and multiply-adds.

  BN layers count their 4 per-channel vectors as parameters and no MACs
  (they fold into the preceding conv for inference).
  """
  validate_input_size(height, width)
  h, w = height, width

  def conv_cost(c, h, w):
    oh = conv_output_size(h, c)
    ow = conv_output_size(w, c)
    k2 = c.kernel * c.kernel
    if c.kind == "depthwise":
      params = k2 * c.in_channels
      macs = oh * ow * k2 * c.in_channels
    else:
      params = k2 * c.in_channels * c.out_channels
      macs = oh * ow * k2 * c.in_channels * c.out_channels
    return LayerCost(c.name, c.kind, (h, w, c.in_channels),
                     (oh, ow, c.out_channels), c.kernel, c.stride, params,
                     macs), oh, ow

  for c in net.convs:
    cost, oh, ow = conv_cost(c, h, w)
    yield cost
    yield LayerCost(c.bn_name, "batchnorm", cost.out_shape, cost.out_shape, 0,
                    1, 4 * c.out_channels, 0)
    h, w = oh, ow
  if net.classifier:
    d = net.classifier
    yield LayerCost(d.name, "dense", (1, 1, d.in_channels),
                    (1, 1, d.out_channels), 1, 1,
                    d.in_channels * d.out_channels + d.out_channels,
                    d.in_channels * d.out_channels)


def count_params(net: Network) -> int:
  total = 0
  for shapes in net.weight_shapes().values():
    for s in shapes.values():
      total += math.prod(s)
  return total


def count_macs(net: Network, height=224, width=224) -> int:
  return sum(c.macs for c in layer_costs(net, height, width))


def output_spatial_size(net: Network, height, width):
  """Spatial size of the final feature map (before pooling)."""
  for c in net.convs:
    height, width = conv_output_size(height, c), conv_output_size(width, c)
  return height, width
