"""The network MobileNetV2 is made of: `Network.layers`, one flat sequence
of named `Layer` records, and the same layers grouped per conv (`Conv`) and
per inverted residual block (`Block`).

arch.derive() builds it from the architecture table (and arch re-exports
these classes); this module knows no names and no widths.
"""

import dataclasses
import math
from typing import Optional, Tuple

# Every `Layer.kind`; each builder's dispatch table maps all of them.
LAYER_KINDS = ("pad", "conv", "depthwise", "bn", "relu6", "add", "pool",
               "dense", "softmax")
_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def correct_pad(height, width, kernel_size=3):
  """`imagenet_utils.correct_pad` for a known spatial size."""
  adjust = (1 - height % 2, 1 - width % 2)
  half = kernel_size // 2
  return ((half - adjust[0], half), (half - adjust[1], half))


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer of `Network.layers`, with its keras.applications name.

  `scope` is the unit it belongs to: "Conv1", "expanded_conv", "block_3",
  "Conv_1", the pool or "predictions".  A "pad" layer is Keras'
  ZeroPadding2D(correct_pad) and the conv after it has padding "valid".
  An "add" adds the output of layer `shortcut` (the block input).  "pool" is
  global, `mode` "avg" or "max".  "softmax" is the activation Keras runs
  inside the "predictions" Dense layer (TFLite: an op of its own), so it
  shares that name.
  """
  kind: str
  name: str
  scope: str
  in_channels: int
  out_channels: int
  kernel: int = 1
  stride: int = 1
  padding: str = "same"
  shortcut: Optional[str] = None
  mode: Optional[str] = None

  @property
  def weight_shapes(self):
    """{weight name: shape} in Keras' variable order; {} if none."""
    k, i, o = self.kernel, self.in_channels, self.out_channels
    return {"conv": {"kernel": (k, k, i, o)},
            "depthwise": {"depthwise_kernel": (k, k, i, 1)},
            "bn": dict.fromkeys(_BN_WEIGHTS, (o,)),
            "dense": {"kernel": (i, o), "bias": (o,)}}.get(self.kind, {})

  @property
  def params(self):
    return sum(math.prod(s) for s in self.weight_shapes.values())

  def output_shape(self, shape):
    """Output shape (no batch) for input `shape`: (h, w, c) or (c,)."""
    if self.kind == "pad":
      (top, bottom), (left, right) = correct_pad(shape[0], shape[1],
                                                 self.kernel)
      return (shape[0] + top + bottom, shape[1] + left + right, shape[2])
    if self.kind in ("conv", "depthwise"):
      if self.padding == "valid":
        size = lambda n: (n - self.kernel) // self.stride + 1
      else:
        size = lambda n: -(-n // self.stride)
      return (size(shape[0]), size(shape[1]), self.out_channels)
    if self.kind in ("pool", "dense"):
      return (self.out_channels,)
    return tuple(shape)

  def macs(self, out_shape):
    """Multiply-adds producing `out_shape`: kernel size x output positions
    for convs and dense; BN folds into the conv, the rest count none."""
    if self.kind in ("conv", "depthwise", "dense"):
      kernel = next(iter(self.weight_shapes.values()))
      return math.prod(out_shape[:-1]) * math.prod(kernel)
    return 0


@dataclasses.dataclass(frozen=True)
class Conv:
  """A conv ("conv") or depthwise conv ("depthwise") + BN (+ ReLU6 when
  `relu_name` is set), preceded by Keras' explicit ZeroPadding2D when
  `pad_name` is set (the "valid" stride-2 depthwise convs)."""
  kind: str
  name: str
  bn_name: str
  in_channels: int
  out_channels: int
  kernel: int
  stride: int
  relu_name: Optional[str]
  pad_name: Optional[str] = None

  def layers(self, scope) -> Tuple[Layer, ...]:
    i, o = self.in_channels, self.out_channels
    out = [Layer("pad", self.pad_name, scope, i, i, self.kernel, self.stride)
          ] if self.pad_name else []
    out.append(Layer(self.kind, self.name, scope, i, o, self.kernel,
                     self.stride, "valid" if self.pad_name else "same"))
    out.append(Layer("bn", self.bn_name, scope, o, o))
    if self.relu_name:
      out.append(Layer("relu6", self.relu_name, scope, o, o))
    return tuple(out)


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

  @property
  def scope(self):
    return self.prefix.rstrip("_")


@dataclasses.dataclass(frozen=True)
class Dense:
  name: str
  in_channels: int
  out_channels: int


@dataclasses.dataclass(frozen=True)
class Network:
  """MobileNetV2 at one width and configuration (arch.derive() builds it).

  `layers` is the whole network, flat; `stem`, `blocks`, `head` and
  `classifier` are the same layers grouped.
  """
  alpha: float
  input_channels: int
  stem: Conv
  blocks: Tuple[Block, ...]
  head: Conv
  classifier: Optional[Dense]
  layers: Tuple[Layer, ...]

  @property
  def convs(self) -> Tuple[Conv, ...]:
    return (self.stem,) + tuple(c for b in self.blocks for c in b.convs) + (
        self.head,)

  def weight_shapes(self):
    """{Keras layer name: {weight name: shape}} in Keras layer order."""
    return {l.name: l.weight_shapes for l in self.layers if l.weight_shapes}

  @property
  def bn_names(self) -> Tuple[str, ...]:
    return tuple(c.bn_name for c in self.convs)

  def run(self, x, call):
    """Threads `x` through `layers`: x = call(layer, x), except that an
    "add" layer gets [shortcut output, x].  For builders whose layers map
    tensors to tensors (forward, the Keras builder)."""
    shortcuts = {l.shortcut for l in self.layers if l.shortcut}
    kept = {}
    for layer in self.layers:
      x = call(layer, [kept.pop(layer.shortcut), x] if layer.shortcut else x)
      if layer.name in shortcuts:
        kept[layer.name] = x
    return x
