"""Where a patched stage can end and what it holds, read from the converted
graph: the block outputs of MobileNetV2 that are the only tensor the rest of
the network reads from the ops before them (`cuts`), the stage's ops as
patch_grid.StageOp, and the MACs of a graph (halos cost MACs).
"""

import dataclasses

import numpy as np

from mobilenet.tflite import exact_graph
from mobilenet.tflite import patch_grid

schema = exact_graph.schema
GridError = patch_grid.GridError


@dataclasses.dataclass(frozen=True)
class Cut:
  """A block output where the stage may end."""
  layer: str        # Keras block name: expanded_conv, block_1, ...
  last_op: int      # index of the stage's last operator
  tensor: int
  height: int
  width: int


def _block_name(n):
  return "expanded_conv" if n == 0 else f"block_{n}"


def _valid_cut(graph, last_op, tensor):
  """Only `tensor` crosses from ops[:last_op+1] to the rest."""
  inside = {t for op in graph.ops[:last_op + 1] for t in op.outputs}
  crossing = {t for op in graph.ops[last_op + 1:] for t in op.inputs
              if t in inside}
  return (crossing == {tensor} and
          all(op.name in patch_grid.SPATIAL_OPS
              for op in graph.ops[:last_op + 1]))


def cuts(graph):
  """The block outputs of a converted MobileNetV2 graph where a stage can
  end, in order: a project conv (no activation, after a depthwise), or the
  ADD of its residual."""
  producer = {t: op for op in graph.ops for t in op.outputs}
  consumers = {}
  for op in graph.ops:
    for t in op.inputs:
      consumers.setdefault(t, []).append(op)
  found, block = [], 0
  for op in graph.ops:
    if (op.name != "CONV_2D" or op.options.fusedActivationFunction != 0 or
        getattr(producer.get(op.inputs[0]), "name", "") !=
        "DEPTHWISE_CONV_2D"):
      continue
    end, readers = op, consumers.get(op.outputs[0], [])
    if len(readers) == 1 and readers[0].name == "ADD":  # the residual
      end = readers[0]
    tensor = end.outputs[0]
    if _valid_cut(graph, end.index, tensor):
      shape = graph.tensors[tensor].shape
      found.append(Cut(_block_name(block), end.index, tensor, shape[1],
                       shape[2]))
    block += 1
  return found


def find_cut(graph, layer):
  by_name = {c.layer: c for c in cuts(graph)}
  if layer not in by_name:
    raise GridError(f"--patches: no block output named {layer!r} to end the "
                    f"patched stage at; use one of {', '.join(by_name)}")
  return by_name[layer]


def stage_ops(graph, cut, after=None):
  """patch_grid.StageOp of every op up to `cut`, from the one after the cut
  `after` (None: from the first)."""
  out = []
  first = after.last_op + 1 if after is not None else 0
  for op in graph.ops[first:cut.last_op + 1]:
    if op.name == "ADD":
      out.append(patch_grid.StageOp(op.index, op.name, op.inputs[:2],
                                    op.outputs[0]))
      continue
    o = op.options
    kernel = graph.tensors[op.inputs[1]].shape[1:3]
    stride = (o.strideH, o.strideW)
    if getattr(o, "dilationHFactor", 1) != 1 or getattr(
        o, "dilationWFactor", 1) != 1:
      raise GridError(f"operator #{op.index} is dilated; patches take "
                      "undilated convolutions only")
    size = graph.tensors[op.inputs[0]].shape[1:3]
    before = (0, 0)
    if o.padding == schema.Padding.SAME:
      before = tuple(patch_grid.same_before(size[i], kernel[i], stride[i])
                     for i in range(2))
    out.append(patch_grid.StageOp(op.index, op.name, op.inputs[:1],
                                  op.outputs[0], tuple(kernel), stride,
                                  before, o.padding == schema.Padding.SAME))
  return out


def macs(tflite):
  """Multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and
  FULLY_CONNECTED, counted on the flatbuffer's own shapes."""
  graph = exact_graph.read_graph(tflite)
  total = 0
  for op in graph.ops:
    out = graph.tensors[op.outputs[0]].shape
    w = graph.tensors[op.inputs[1]].shape if len(op.inputs) > 1 else ()
    if op.name == "CONV_2D":
      total += out[1] * out[2] * w[0] * w[1] * w[2] * w[3]
    elif op.name == "DEPTHWISE_CONV_2D":
      total += out[1] * out[2] * w[1] * w[2] * w[3]
    elif op.name == "FULLY_CONNECTED":
      total += int(np.prod(out[:-1])) * w[0] * w[1]
  return total
