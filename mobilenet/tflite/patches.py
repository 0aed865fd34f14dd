"""Patch-based inference in stock TFLite Micro: a rewrite of the int8 .tflite
(MCUNetV2's idea, arXiv 2110.15352) so that the memory-heavy first stage runs
one spatial patch at a time, with ops TFLM already has.

For each patch of an R x C grid over the stage's output (patch_grid.py):
STRIDED_SLICE reads the window of the image (or of a patch tensor) the
patch's receptive field needs, PAD adds zero-point rows and columns only
where the window crosses the image border (TFLite's and TFLM's int8 PAD fill
with the output zero point when no value is given: tensorflow/lite/kernels/
pad.cc, tensorflow/lite/micro/kernels/pad.cc), and the stage's own CONV_2D,
DEPTHWISE_CONV_2D and ADD run with VALID padding on the same weight and bias
tensors (stored once).  Every new tensor carries the quantization of the
tensor it is a window of, so slices, pads and concatenations are pure copies
and the patched model's output is bit-identical to the original's.
CONCATENATION along W, then H, reassembles the cut tensor for the rest of
the network.

Costs: halos recompute overlapping rows (MACs), and TFLM keeps per-channel
multipliers and shifts for each conv instance in its persistent arena.
"""

import copy

import flatbuffers
import numpy as np

from mobilenet.tflite import exact_graph
from mobilenet.tflite import patch_grid
from mobilenet.tflite import patch_stage

schema = exact_graph.schema
GridError = patch_grid.GridError
macs = patch_stage.macs

_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
_ALIGNMENT = 16  # the schema's force_align on Buffer.data


class _Aligned(schema.BufferT):
  """A buffer packed 16-byte aligned, as the TFLite converter writes it
  (the object API's own Pack aligns to 4)."""

  def Pack(self, builder):  # pylint: disable=invalid-name
    data = None
    if self.data is not None:
      raw = np.asarray(self.data, np.uint8).tobytes()
      builder.StartVector(1, len(raw), _ALIGNMENT)
      builder.head -= len(raw)
      builder.Bytes[builder.head:builder.head + len(raw)] = raw
      data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
      schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, self.offset)
    schema.BufferAddSize(builder, self.size)
    return schema.BufferEnd(builder)


def _aligned(buf):
  out = _Aligned()
  out.data, out.offset, out.size = buf.data, buf.offset, buf.size
  return out


class _Writer:
  """Appends tensors, constants and op codes to a ModelT's first subgraph."""

  def __init__(self, model):
    self.model = model
    self.graph = model.subgraphs[0]
    self._constants = {}

  def tensor(self, name, shape, like):
    t = schema.TensorT()
    t.name = name.encode()
    t.shape = np.asarray(shape, np.int32)
    t.type = like.type
    t.buffer = 0  # the empty buffer: computed, not constant
    t.quantization = copy.deepcopy(like.quantization)
    self.graph.tensors.append(t)
    return len(self.graph.tensors) - 1

  def int32(self, values):
    """A constant int32 tensor, shared between equal values."""
    values = np.asarray(values, np.int32)
    key = (values.shape, values.tobytes())
    if key not in self._constants:
      buf = schema.BufferT()
      buf.data = np.frombuffer(values.astype("<i4").tobytes(), np.uint8)
      self.model.buffers.append(buf)
      t = schema.TensorT()
      t.name = f"patch_const_{len(self._constants)}".encode()
      t.shape = np.asarray(values.shape, np.int32)
      t.type = schema.TensorType.INT32
      t.buffer = len(self.model.buffers) - 1
      self.graph.tensors.append(t)
      self._constants[key] = len(self.graph.tensors) - 1
    return self._constants[key]

  def opcode(self, builtin, version):
    for i, code in enumerate(self.model.operatorCodes):
      if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
        return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = version  # the int8 kernels' version
    self.model.operatorCodes.append(code)
    return len(self.model.operatorCodes) - 1

  def op(self, builtin, inputs, outputs, options_type=0, options=None):
    op = schema.OperatorT()
    op.opcodeIndex = self.opcode(builtin, 2)
    op.inputs = np.asarray(inputs, np.int32)
    op.outputs = np.asarray(outputs, np.int32)
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    return op

  def slice(self, src, rect, origin, name):
    t = self.graph.tensors[src]
    h0, h1, w0, w1 = rect
    c = int(t.shape[3])
    out = self.tensor(name, (1, h1 - h0, w1 - w0, c), t)
    begin = [0, h0 - origin[0], w0 - origin[1], 0]
    end = [1, h1 - origin[0], w1 - origin[1], c]
    opts = schema.StridedSliceOptionsT()
    return out, self.op(schema.BuiltinOperator.STRIDED_SLICE,
                        [src, self.int32(begin), self.int32(end),
                         self.int32([1, 1, 1, 1])], [out],
                        schema.BuiltinOptions.StridedSliceOptions, opts)

  def pad(self, src, pads, name):
    t = self.graph.tensors[src]
    top, bottom, left, right = pads
    n, h, w, c = (int(v) for v in t.shape)
    out = self.tensor(name, (n, h + top + bottom, w + left + right, c), t)
    paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]
    return out, self.op(schema.BuiltinOperator.PAD,
                        [src, self.int32(paddings)], [out],
                        schema.BuiltinOptions.PadOptions, schema.PadOptionsT())

  def concat(self, inputs, axis, out):
    opts = schema.ConcatenationOptionsT()
    opts.axis = axis
    return self.op(schema.BuiltinOperator.CONCATENATION, inputs, [out],
                   schema.BuiltinOptions.ConcatenationOptions, opts)


def _short(name):
  name = name.decode() if isinstance(name, bytes) else (name or "t")
  return name.split(";")[0]


def _narrowing(op, t, tensors, local):
  """A 1x1 conv that narrows an in-stage tensor (a block's projection):
  run on all of its input, garbage margins included, rather than copy the
  wide input into a window; the narrow output is cheap to slice."""
  return (op.kind == "CONV_2D" and op.kernel == (1, 1) and
          op.stride == (1, 1) and t in local and
          int(tensors[t].shape[3]) > int(tensors[op.output].shape[3]))


def _patch_ops(w, ops, plan, tag):
  """The ops computing one patch; returns (ops, tensor of the tile)."""
  tensors, new_ops, local, rects = w.graph.tensors, [], {}, {}

  def window(src, rect, want, name):
    if want != rect:
      src, sl = w.slice(src, want, (rect[0], rect[2]), f"{name}/window")
      new_ops.append(sl)
    return src

  for op in ops:
    orig = w.graph.operators[op.index]
    inputs = [int(v) for v in orig.inputs]
    out_rect = plan.computed.get(op.output, plan.need[op.output])
    same = False
    for pos, t in enumerate(op.inputs):
      win = plan.reads[(op.index, pos)]
      name = f"{tag}/{_short(tensors[t].name)}"
      if t in local:
        src, rect = local[t], rects[t]
      else:  # the stage input, whole
        src = t
        rect = (0, int(tensors[t].shape[1]), 0, int(tensors[t].shape[2]))
      if _narrowing(op, t, tensors, local):
        out_rect = rect
      else:
        src = window(src, rect, win.rect, name)
      if any(win.pads):
        src, pd = w.pad(src, win.pads, f"{name}/pad")
        new_ops.append(pd)
      inputs[pos], same = src, same or win.same
    h0, h1, w0, w1 = out_rect
    like = tensors[op.output]
    out = w.tensor(f"{tag}/{_short(like.name)}",
                   (1, h1 - h0, w1 - w0, int(like.shape[3])), like)
    new = copy.deepcopy(orig)
    new.inputs = np.asarray(inputs, np.int32)
    new.outputs = np.asarray([out], np.int32)
    if op.kind in _CONV_OPS:
      new.builtinOptions.padding = (schema.Padding.SAME if same else
                                    schema.Padding.VALID)
    new_ops.append(new)
    local[op.output], rects[op.output] = out, out_rect
  last = ops[-1].output
  return new_ops, window(local[last], rects[last], plan.tile,
                         f"{tag}/{_short(tensors[last].name)}")


def _compact(model):
  """Drops the tensors and buffers no op, I/O or metadata refers to
  (the whole-image tensors the patches replaced), renumbering the rest."""
  g = model.subgraphs[0]
  used = set(int(v) for v in g.inputs) | set(int(v) for v in g.outputs)
  for op in g.operators:
    used |= {int(v) for v in op.inputs if v >= 0}
    used |= {int(v) for v in op.outputs}
  keep = sorted(used)
  remap = {old: new for new, old in enumerate(keep)}
  g.tensors = [g.tensors[i] for i in keep]
  re = lambda vs: np.asarray([remap[int(v)] if v >= 0 else -1 for v in vs],  # pylint: disable=unnecessary-lambda-assignment
                             np.int32)
  for op in g.operators:
    op.inputs, op.outputs = re(op.inputs), re(op.outputs)
  g.inputs, g.outputs = re(g.inputs), re(g.outputs)
  for sig in model.signatureDefs or []:
    for m in list(sig.inputs or []) + list(sig.outputs or []):
      m.tensorIndex = remap[m.tensorIndex]
  bufs = {0} | {t.buffer for t in g.tensors} | {
      m.buffer for m in model.metadata or []}
  order = sorted(bufs)
  bremap = {old: new for new, old in enumerate(order)}
  model.buffers = [_aligned(model.buffers[i]) for i in order]
  for t in g.tensors:
    t.buffer = bremap[t.buffer]
  for m in model.metadata or []:
    m.buffer = bremap[m.buffer]


def _stage(w, graph, ops, cut, rows, cols, tag):
  """The ops of one patched stage, ending in its cut tensor, whole."""
  shapes = {t.index: t.shape for t in graph.tensors}
  new_ops, row_tensors, tiles = [], [], []
  like = w.graph.tensors[cut.tensor]
  for n, tile in enumerate(patch_grid.tiles(cut.height, cut.width, rows,
                                            cols)):
    r, c = divmod(n, cols)
    plan = patch_grid.plan_patch(ops, shapes, tile)
    patch_ops, out = _patch_ops(w, ops, plan, f"{tag}r{r}c{c}")
    new_ops += patch_ops
    tiles.append(out)
    if c == cols - 1:  # a row is done: join it before the next one starts
      if cols == 1:
        row_tensors.append(tiles[-1])
        continue
      row = cut.tensor if rows == 1 else w.tensor(
          f"{tag}row{r}/{_short(like.name)}",
          (1, cut.height // rows, cut.width, int(like.shape[3])), like)
      new_ops.append(w.concat(tiles[-cols:], 2, row))
      row_tensors.append(row)
  if rows > 1:
    new_ops.append(w.concat(row_tensors, 1, cut.tensor))
  return new_ops


def patch(tflite, stages):
  """The .tflite bytes with the network run patch by patch in `stages`:
  [(rows, cols, layer)], each stage from the end of the one before (the
  image for the first) to the output of block `layer`, on a rows x cols
  grid of that output.  GridError when a grid or block does not fit."""
  graph = exact_graph.read_graph(tflite)
  model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
  w = _Writer(model)
  new_ops, prev = [], None
  for n, (rows, cols, layer) in enumerate(stages):
    cut = patch_stage.find_cut(graph, layer)
    if prev is not None and cut.last_op <= prev.last_op:
      raise GridError(f"--patches: {layer} does not come after {prev.layer};"
                      " list the stages in network order")
    patch_grid.check_grid(rows, cols, layer, cut.height, cut.width)
    ops = patch_stage.stage_ops(graph, cut, prev)
    new_ops += _stage(w, graph, ops, cut, rows, cols, f"patch{n}_")
    prev = cut
  model.subgraphs[0].operators = (new_ops +
                                  model.subgraphs[0].operators[prev.last_op +
                                                               1:])
  _compact(model)
  builder = flatbuffers.Builder(len(tflite) + (1 << 16))
  builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
  return bytes(builder.Output())
