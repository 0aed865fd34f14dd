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
  same: bool = False      # SAME padding in the model


@dataclasses.dataclass(frozen=True)
class Window:
  """A spatial window [h0, h1) x [w0, w1) plus the zero-point padding that
  completes it at the image border (top, bottom, left, right)."""
  h0: int
  h1: int
  w0: int
  w1: int
  pads: tuple = (0, 0, 0, 0)
  same: bool = False  # read by the conv with SAME padding, no PAD op

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


def _same_span(a, b, kernel, stride, before, size):
  """Rows [lo, hi) on which a SAME conv computes global outputs [a, b)
  right, as (lo, hi, first output, outputs), fewest rows first; None when
  no window of a few extra rows does.

  SAME pads the window itself, so its outputs align with the image's only
  when (lo - window's top padding + before) is a multiple of the stride,
  and an output is right only when every image row it reads is inside the
  window: the window's padding then stands for the image's.  The outputs
  next to a window edge inside the image are garbage; the plan computes
  them and never reads them."""
  vlo, vhi = a * stride - before, (b - 1) * stride - before + kernel
  for extra in range(2 * stride + kernel):
    for down in range(extra + 1):
      lo, hi = max(vlo - down, 0), min(vhi + extra - down, size)
      n = hi - lo
      count = -(-n // stride)
      top = max((count - 1) * stride + kernel - n, 0) // 2
      if (lo - top + before) % stride:
        continue
      first = (lo - top + before) // stride
      rows = [(max(o * stride - before, 0),
               min(o * stride - before + kernel, size)) for o in range(a, b)]
      if (first <= a and b <= first + count and
          all(lo <= r0 and r1 <= hi for r0, r1 in rows)):
        return lo, hi, first, count
  return None


def same_window(op, out, size_hw):
  """(Window read with SAME padding, output rect computed) for `op` on
  output rectangle `out`, or None."""
  h = _same_span(out.h0, out.h1, op.kernel[0], op.stride[0], op.before[0],
                 size_hw[0])
  w = _same_span(out.w0, out.w1, op.kernel[1], op.stride[1], op.before[1],
                 size_hw[1])
  if h is None or w is None:
    return None
  return (Window(h[0], h[1], w[0], w[1], same=True),
          (h[2], h[2] + h[3], w[2], w[2] + w[3]))


def _hull(a, b):
  if a is None:
    return b
  return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


@dataclasses.dataclass(frozen=True)
class PatchPlan:
  """One patch: the rectangle of each stage tensor its consumers read
  (`need`), the Window each op reads of each of its inputs (`reads`, keyed
  by (op index, input position)) and the larger rectangle a SAME conv
  computes (`computed`, by output tensor)."""
  tile: tuple
  need: dict
  reads: dict
  computed: dict = dataclasses.field(default_factory=dict)


def plan_patch(ops, shapes, tile):
  """PatchPlan of the tile (h0, h1, w0, w1) of the last op's output.

  `shapes`: tensor index -> NHWC shape.  Every op's output must be needed
  (a stage is a chain with residual branches, all feeding the cut)."""
  need = {ops[-1].output: tuple(tile)}
  reads, computed = {}, {}
  for op in reversed(ops):
    out = need.get(op.output)
    if out is None:
      raise GridError(f"operator #{op.index} feeds nothing in the stage")
    for pos, t in enumerate(op.inputs):
      win = input_window(op, Window(*out), shapes[t][1:3])
      if any(win.pads) and op.same and op.kind == "DEPTHWISE_CONV_2D":
        # At the border, a PAD would copy the wide expanded tensor; SAME
        # on a slightly larger window needs no copy.
        same = same_window(op, Window(*out), shapes[t][1:3])
        if same:
          win, computed[op.output] = same
      reads[(op.index, pos)] = win
      need[t] = _hull(need.get(t), win.rect)
  return PatchPlan(tuple(tile), need, reads, computed)


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


def parse_grid(text, spec=None):
  """"RxC" -> (R, C), or GridError quoting `spec` (the whole flag value
  `text` came from; default `text`)."""
  spec = text if spec is None else spec
  parts = text.lower().split("x")
  if len(parts) != 2 or not all(p.isdigit() for p in parts):
    raise GridError(f"--patches={spec}: expected auto, off or RxC[@LAYER] "
                    "(e.g. 4x4@block_2)")
  rows, cols = int(parts[0]), int(parts[1])
  if rows < 1 or cols < 1 or rows * cols < 2:
    raise GridError(f"--patches={spec}: a grid needs at least 2 patches")
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
