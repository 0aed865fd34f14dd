"""The geometry of patch-based inference: which window of every tensor of the
first stage a patch needs, and where the image border pads it.

A stage is the network's first ops (CONV_2D, DEPTHWISE_CONV_2D, ADD) up to a
cut, a tensor that is the only one the rest of the network reads from the
stage.  Its output is split into an R x C grid of tiles; walking the stage
backwards, each tile needs a window of every tensor before it: a k x k conv
with stride s needs rows [a*s - before, (b-1)*s - before + k) of its input
for output rows [a, b), where `before` is the padding SAME puts on top (0
for VALID).  Rows outside the image are the padding, and exist only at the
image border: there the patch pads by the same amount SAME would have, so a
VALID conv on the padded window computes the very values of the whole-image
SAME conv.

Pure Python on shapes and strides: patches.py turns a plan into ops.
"""

import dataclasses

SPATIAL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")
# TFLM's CONCATENATION takes at most 10 inputs (kMaxInputNum in
# tensorflow/lite/micro/kernels/concatenation.cc): one per grid row / column.
MAX_SPLITS = 10


class GridError(ValueError):
  """A grid or cut that cannot be used; the message names what works."""


@dataclasses.dataclass(frozen=True)
class StageOp:
  """One op of the stage, reduced to what the geometry needs."""
  index: int          # operator index in the graph
  kind: str           # one of SPATIAL_OPS
  inputs: tuple       # activation tensor indices
  output: int
  kernel: tuple = (1, 1)
  stride: tuple = (1, 1)
  before: tuple = (0, 0)  # padding above / left of the image (SAME)


@dataclasses.dataclass(frozen=True)
class Window:
  """A spatial window [h0, h1) x [w0, w1) plus the zero-point padding that
  completes it at the image border (top, bottom, left, right)."""
  h0: int
  h1: int
  w0: int
  w1: int
  pads: tuple = (0, 0, 0, 0)

  @property
  def rect(self):
    return (self.h0, self.h1, self.w0, self.w1)


def same_before(size, kernel, stride):
  """SAME's padding before the first row (TFLite's ComputePaddingHeightWidth:
  the total split with the smaller half first)."""
  out = -(-size // stride)
  return max((out - 1) * stride + kernel - size, 0) // 2


def _span(a, b, kernel, stride, before, size):
  lo, hi = a * stride - before, (b - 1) * stride - before + kernel
  return max(lo, 0), min(hi, size), max(0, -lo), max(0, hi - size)


def input_window(op, out, size_hw):
  """The input Window `op` reads for output rectangle `out`."""
  if op.kind == "ADD":
    return Window(*out.rect)
  h0, h1, top, bottom = _span(out.h0, out.h1, op.kernel[0], op.stride[0],
                              op.before[0], size_hw[0])
  w0, w1, left, right = _span(out.w0, out.w1, op.kernel[1], op.stride[1],
                              op.before[1], size_hw[1])
  return Window(h0, h1, w0, w1, (top, bottom, left, right))


def _hull(a, b):
  if a is None:
    return b
  return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


@dataclasses.dataclass(frozen=True)
class PatchPlan:
  """One patch: the rectangle each stage tensor is computed over (`need`)
  and the Window each op reads of each of its inputs (`reads`, keyed by
  (op index, input position))."""
  tile: tuple
  need: dict
  reads: dict


def plan_patch(ops, shapes, tile):
  """PatchPlan of the tile (h0, h1, w0, w1) of the last op's output.

  `shapes`: tensor index -> NHWC shape.  Every op's output must be needed
  (a stage is a chain with residual branches, all feeding the cut)."""
  need = {ops[-1].output: tuple(tile)}
  reads = {}
  for op in reversed(ops):
    out = need.get(op.output)
    if out is None:
      raise GridError(f"operator #{op.index} feeds nothing in the stage")
    for pos, t in enumerate(op.inputs):
      win = input_window(op, Window(*out), shapes[t][1:3])
      reads[(op.index, pos)] = win
      need[t] = _hull(need.get(t), win.rect)
  return PatchPlan(tuple(tile), need, reads)


def tiles(height, width, rows, cols):
  """The grid's tiles in row-major order, (h0, h1, w0, w1) each."""
  th, tw = height // rows, width // cols
  return [(r * th, (r + 1) * th, c * tw, (c + 1) * tw)
          for r in range(rows) for c in range(cols)]


def divisors(n):
  return [d for d in range(1, min(n, MAX_SPLITS) + 1) if n % d == 0]


def grids(height, width):
  """Every grid that divides a height x width output (R, C <= MAX_SPLITS),
  the 1 x 1 non-grid left out."""
  return [(r, c) for r in divisors(height) for c in divisors(width)
          if r * c > 1]


def parse_grid(text):
  """"RxC" -> (R, C), or GridError."""
  parts = text.lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() for p in parts):
    raise GridError(f"--patches={text}: expected auto, off or RxC[@LAYER] "
                    "(e.g. 4x4@block_2)")
  rows, cols = int(parts[0]), int(parts[1])
  if rows < 1 or cols < 1 or rows * cols < 2:
    raise GridError(f"--patches={text}: a grid needs at least 2 patches")
  return rows, cols


def check_grid(rows, cols, layer, height, width):
  """GridError naming the grids that work when RxC does not divide."""
  if (rows, cols) in grids(height, width):
    return
  works = ", ".join(f"{r}x{c}" for r, c in grids(height, width)
                    if r == c) or "none square"
  raise GridError(
      f"--patches={rows}x{cols}@{layer}: {layer}'s output is {height}x"
      f"{width}, which a {rows}x{cols} grid does not divide (at most "
      f"{MAX_SPLITS} per side, TFLM's CONCATENATION limit); grids that work"
      f": {works}, or any R dividing {height} by C dividing {width}")
