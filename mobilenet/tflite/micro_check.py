"""What a microcontroller build can run: TFLM's builtin ops, integer tensors,
static shapes, int8 input and output, a batch of 1.

Checked on the flatbuffer itself (read with TFLM's own schema), so a model
fails with one line naming the op or tensor before any file is written, and
before TFLM's interpreter would fail with a message about op codes.
"""

import dataclasses

from mobilenet.tflite import micro_runtime

# TFLM's builtin ops and the MicroMutableOpResolver method registering each
# (tensorflow/lite/micro/micro_mutable_op_resolver.h).  micro_check_test
# checks every entry against the kernels compiled into the installed TFLM.
TFLM_OPS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul",
    "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack",
    "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound", "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin",
    "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum",
    "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

# Integer-only kernels: int8 activations and weights (int16 for 16x8
# quantization), int32 biases, shapes and axes.  Float tensors mean a float
# kernel, slow and large without an FPU, and not what was asked for.
INTEGER_TYPES = ("INT8", "INT16", "INT32")


class MicroError(ValueError):
  """The model cannot be a microcontroller build; the message says why."""


@dataclasses.dataclass(frozen=True)
class MicroOps:
  """The builtin ops a model uses, sorted by name (TFLM's generator order)."""
  names: tuple

  @property
  def registrations(self):
    return tuple(TFLM_OPS[n] for n in self.names)


def _enum_names(enum_class):
  return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def _name(tensor):
  return tensor.name.decode("utf-8", "replace") if tensor.name else "?"


def check(data):
  """MicroOps of `data` (.tflite bytes), or MicroError naming what TFLM
  cannot run: an op, a tensor type, a dynamic dimension, float I/O."""
  schema = micro_runtime.tflm().schema_fb
  op_names = _enum_names(schema.BuiltinOperator)
  type_names = _enum_names(schema.TensorType)
  model = micro_runtime.read_flatbuffer(data)
  if len(model.subgraphs) != 1:
    raise MicroError(f"the model has {len(model.subgraphs)} subgraphs; the "
                     "micro target takes one (no control flow)")
  graph = model.subgraphs[0]
  tensors = graph.tensors

  for kind, indices in (("input", graph.inputs), ("output", graph.outputs)):
    for i in indices:
      dtype = type_names.get(tensors[i].type, str(tensors[i].type))
      if dtype != "INT8":
        raise MicroError(
            f"{kind} tensor '{_name(tensors[i])}' is {dtype.lower()}; the "
            f"micro target needs int8 {kind}s (TFLM's int8 kernels, no float "
            "at the edges): convert with --quantize=int8")

  used = set()
  for n, op in enumerate(graph.operators):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = op_names.get(builtin, f"builtin #{builtin}")
    if name == "CUSTOM":
      custom = (code.customCode or b"?").decode("utf-8", "replace")
      raise MicroError(f"operator #{n} is the custom op '{custom}', which "
                       "TFLite Micro has no kernel for; keep the model to "
                       "builtin ops")
    if name not in TFLM_OPS:
      raise MicroError(f"operator #{n} is {name}, which TFLite Micro has no "
                       "kernel for; change the model so the converter does "
                       "not emit it")
    used.add(name)
    for i in list(op.inputs) + list(op.outputs):
      if i < 0:  # an omitted optional input
        continue
      dtype = type_names.get(tensors[i].type, str(tensors[i].type))
      if dtype not in INTEGER_TYPES:
        raise MicroError(
            f"tensor '{_name(tensors[i])}' of operator #{n} ({name}) is "
            f"{dtype.lower()}; the micro target runs integer kernels only "
            "(int8, int16, int32): convert with --quantize=int8")

  for t in tensors:
    signature = [int(d) for d in (t.shapeSignature if t.shapeSignature
                                  is not None else ())]
    if any(d < 0 for d in signature):
      raise MicroError(
          f"tensor '{_name(t)}' has a dynamic shape {signature}; "
          "TFLite Micro plans its arena ahead of time and needs static "
          "shapes: build the model with a static batch of 1")
  batch = int(tensors[graph.inputs[0]].shape[0])
  if batch != 1:
    raise MicroError(f"input tensor '{_name(tensors[graph.inputs[0]])}' has "
                     f"batch {batch}; the micro target runs one image at a "
                     "time: build the model with a batch of 1")
  return MicroOps(tuple(sorted(used)))
