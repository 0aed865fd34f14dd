"""A .tflite flatbuffer as plain Python: tensors (constant data, scales and
zero points per tensor or per channel) and operators with their options,
read with the TFLite schema bindings LiteRT ships (no interpreter, no
TensorFlow).  The integer-exact forward walks this graph.
"""

import dataclasses

import numpy as np

try:
  from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - LiteRT is a declared dependency
  from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=g-import-not-at-top

from mobilenet.tflite import classifier

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_")}
_TYPES = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
          schema.TensorType.INT16: np.int16, schema.TensorType.INT32: np.int32,
          schema.TensorType.INT64: np.int64,
          schema.TensorType.FLOAT32: np.float32}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items()
               if not k.startswith("_")}


@dataclasses.dataclass
class Tensor:
  index: int
  name: str
  shape: tuple
  dtype: np.dtype
  scales: np.ndarray        # float32, empty when not quantized
  zero_points: np.ndarray   # int64
  quantized_dimension: int
  data: np.ndarray = None   # constants only

  @property
  def scale(self):
    """The per-tensor scale (activations are per-tensor in TFLite's spec)."""
    return float(self.scales[0]) if len(self.scales) else 0.0

  @property
  def zero_point(self):
    return int(self.zero_points[0]) if len(self.zero_points) else 0

  def detail(self):
    """The subset of LiteRT's get_tensor_details() a dump writes."""
    return {"index": self.index, "name": self.name,
            "shape": np.array(self.shape, np.int32), "dtype": self.dtype,
            "quantization": (self.scale, self.zero_point)}


@dataclasses.dataclass
class Op:
  index: int
  name: str         # builtin operator name, e.g. "CONV_2D"
  inputs: tuple     # tensor indices, -1 for an omitted optional input
  outputs: tuple
  options: object   # the schema's *OptionsT object, or None


@dataclasses.dataclass
class Graph:
  tensors: list
  ops: list
  inputs: tuple
  outputs: tuple


def _array(values, dtype):
  if values is None:
    return np.zeros((0,), dtype)
  return np.asarray(values, dtype).reshape(-1)


def read_graph(data, name="<bytes>"):
  """Graph of the first subgraph of a .tflite model given as bytes."""
  try:
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
  except Exception as e:  # pylint: disable=broad-except
    raise classifier.ModelFileError(
        f"{name}: cannot read the TFLite flatbuffer ({e})") from None
  if not model.subgraphs:
    raise classifier.ModelFileError(f"{name}: the model has no subgraph")
  graph = model.subgraphs[0]
  tensors = []
  for i, t in enumerate(graph.tensors):
    if t.type not in _TYPES:
      kind = _TYPE_NAMES.get(t.type, str(t.type))
      raise classifier.ModelFileError(
          f"{name}: tensor {i} is {kind}; the integer-exact forward runs "
          "full-integer models only (convert with --quantize int8 or uint8)")
    dtype = np.dtype(_TYPES[t.type])
    q = t.quantization
    shape = tuple(int(v) for v in (t.shape if t.shape is not None else ()))
    buf = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
    values = None
    if buf is not None and len(buf):
      values = np.frombuffer(bytes(np.asarray(buf, np.uint8)),
                             dtype).reshape(shape)
    tensors.append(Tensor(
        index=i, name=(t.name or b"").decode() if isinstance(t.name, bytes)
        else (t.name or ""), shape=shape, dtype=dtype,
        scales=_array(q.scale if q else None, np.float32),
        zero_points=_array(q.zeroPoint if q else None, np.int64),
        quantized_dimension=int(q.quantizedDimension) if q else 0,
        data=values))
  ops = []
  for k, op in enumerate(graph.operators):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    ops.append(Op(index=k, name=_OP_NAMES.get(builtin, f"CUSTOM({builtin})"),
                  inputs=tuple(int(v) for v in op.inputs),
                  outputs=tuple(int(v) for v in op.outputs),
                  options=op.builtinOptions))
  return Graph(tensors, ops, tuple(int(v) for v in graph.inputs),
               tuple(int(v) for v in graph.outputs))
