"""Runs image-classification .tflite models with LiteRT.

`Model` accepts any classifier flatbuffer: float32, int8 or uint8 input, any
input size, 1 or 3 channels (the I/O logic it shares with TFLite Micro's
runtime is `classifier.Classifier`).  Callers pass normalised float images (or
pixels plus a normalisation); inputs are quantized and outputs dequantized
with the model's own scale and zero point, so int8, uint8 and float models
are used the same way.  Files are checked before the interpreter sees them:
a file that is not a TFLite flatbuffer, or is cut short, raises
ModelFileError with one clear line.
"""

import json
import os
import struct

import numpy as np

try:
  from ai_edge_litert import interpreter as _litert
  Interpreter = _litert.Interpreter
  _NO_DELEGATES = _litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  _REFERENCE = _litert.OpResolverType.BUILTIN_REF
  BACKEND = "ai-edge-litert"
except ImportError:  # pragma: no cover - LiteRT is a declared dependency
  import tensorflow as _tf  # pylint: disable=g-import-not-at-top
  Interpreter = _tf.lite.Interpreter
  _NO_DELEGATES = _tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  _REFERENCE = _tf.lite.experimental.OpResolverType.BUILTIN_REF
  BACKEND = "tensorflow"

from mobilenet.tflite import classifier

# Shared with the other runtimes; callers know them as runtime.*.
Classifier = classifier.Classifier
ModelFileError = classifier.ModelFileError
normalization_spec = classifier.normalization_spec
normalize = classifier.normalize
quantize = classifier.quantize
dequantize = classifier.dequantize

FILE_IDENTIFIER = b"TFL3"
# Root offset (4) + identifier (4) + the smallest possible table.
_MIN_SIZE = 16


def read_model(path):
  """The bytes of a .tflite file, checked enough that LiteRT cannot crash."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ModelFileError(f"{path}: no such model file")
  if os.path.isdir(path):
    raise ModelFileError(f"{path}: is a directory, not a .tflite file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ModelFileError(f"{path}: cannot read model ({e.strerror or e})") from None
  check_model_bytes(data, path)
  return data


def check_model_bytes(data, name="<bytes>"):
  if len(data) < _MIN_SIZE:
    raise ModelFileError(f"{name}: {len(data)} bytes is too short for a "
                         "TFLite model (truncated or empty file)")
  if data[4:8] != FILE_IDENTIFIER:
    raise ModelFileError(
        f"{name}: not a TFLite model (no 'TFL3' flatbuffer identifier); "
        "pass a .tflite file made by the TFLite converter")
  (root,) = struct.unpack("<I", data[:4])
  if root + 4 > len(data):
    raise ModelFileError(f"{name}: truncated TFLite model (root table at "
                         f"byte {root} of {len(data)})")


DEFAULT_MODEL = "mobilenet_v2_int8.tflite"


def built_artifact(filename):
  """A file //mobilenet/tflite builds (the int8 and micro models and their
  generated sources): beside this file (runfiles, the wheel) or in the tree's
  bazel-bin; ModelFileError naming the target to build otherwise."""
  here = os.path.dirname(os.path.abspath(__file__))
  for d in (here, os.path.join(here, "..", "..", "bazel-bin", "mobilenet",
                               "tflite")):
    path = os.path.normpath(os.path.join(d, filename))
    if os.path.isfile(path):
      return path
  target = filename.split(".")[0].removesuffix("_model_data").removesuffix(
      "_op_resolver")
  raise ModelFileError(
      f"{filename} is not built; run `tools/bazel build "
      f"//mobilenet/tflite:{target}` or pass --model")


def default_model():
  """The bundled int8 digit model that //mobilenet/tflite:mobilenet_v2_int8
  builds."""
  return built_artifact(DEFAULT_MODEL)


def read_sidecar(model_path):
  """The converter's JSON sidecar next to `model_path`, or None."""
  path = os.path.splitext(os.fspath(model_path))[0] + ".json"
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return None
  return meta if isinstance(meta, dict) else None


def class_names(num_classes, meta, labels_path=None):
  """(names aligned to the outputs, note or None): from `labels_path`, else
  the sidecar `meta`, else the defaults for that many outputs (the note
  says what was assumed)."""
  from mobilenet.core import labels as labels_lib  # pylint: disable=g-import-not-at-top
  if labels_path:
    return labels_lib.align(labels_lib.load_labels(labels_path),
                            num_classes), None
  if meta and meta.get("labels"):
    return labels_lib.align(meta["labels"], num_classes), None
  return labels_lib.default_names(num_classes)


def _quant(detail):
  scale, zero_point = detail["quantization"]
  return float(scale), int(zero_point)


class Model(Classifier):
  """One .tflite classifier (path or bytes) run by LiteRT.

  `reference_kernels=True` runs LiteRT's reference kernels
  (OpResolverType.BUILTIN_REF): plain C++ loops, the numerics TFLite Micro's
  kernels reproduce, so outputs can be compared bit for bit.
  """

  def __init__(self, model, num_threads=None, preserve_all_tensors=False,
               use_default_delegates=None, reference_kernels=False):
    if isinstance(model, (bytes, bytearray)):
      self.path = None
      data = bytes(model)
      check_model_bytes(data)
    else:
      self.path = os.fspath(model)
      data = read_model(self.path)
    self.num_bytes = len(data)
    if use_default_delegates is None:
      # XNNPACK would fuse ops away and hide their intermediate tensors.
      use_default_delegates = not (preserve_all_tensors or reference_kernels)
    kwargs = {}
    if reference_kernels:
      kwargs["experimental_op_resolver_type"] = _REFERENCE
    elif not use_default_delegates:
      kwargs["experimental_op_resolver_type"] = _NO_DELEGATES
    name = self.path or "<bytes>"
    try:
      self.interpreter = Interpreter(
          model_content=data, num_threads=num_threads,
          experimental_preserve_all_tensors=preserve_all_tensors, **kwargs)
      self.interpreter.allocate_tensors()
    except ValueError as e:
      raise ModelFileError(f"{name}: LiteRT cannot load the model "
                           f"({str(e).splitlines()[0]})") from None
    except RuntimeError as e:
      raise ModelFileError(f"{name}: LiteRT cannot prepare the model "
                           f"({str(e).splitlines()[0]})") from None
    inputs = self.interpreter.get_input_details()
    outputs = self.interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
      raise ModelFileError(f"{name}: expected one input and one output, got "
                           f"{len(inputs)} and {len(outputs)}")
    self.input, self.output = inputs[0], outputs[0]
    self._set_io(name, self.input["shape"], self.input["dtype"],
                 _quant(self.input), self.output["shape"],
                 self.output["dtype"], _quant(self.output))

  # ---- description ------------------------------------------------------

  def describe_io(self):
    def one(d):
      scale, zp = _quant(d)
      return {"name": d["name"], "dtype": np.dtype(d["dtype"]).name,
              "shape": [int(v) for v in d["shape"]], "scale": scale,
              "zero_point": zp}
    return {"input": one(self.input), "output": one(self.output)}

  def op_counts(self):
    counts = {}
    for op in self.interpreter._get_ops_details():  # pylint: disable=protected-access
      counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts

  def _invoke(self, batch):
    self.interpreter.set_tensor(self.input["index"], batch)
    self.interpreter.invoke()
    return self.interpreter.get_tensor(self.output["index"])

  # ---- intermediate tensors --------------------------------------------

  def activation_indices(self):
    """Indices of the tensors computed at run time (input and op outputs)."""
    ops = self.interpreter._get_ops_details()  # pylint: disable=protected-access
    return {int(self.input["index"])} | {int(i) for op in ops
                                         for i in op["outputs"]}

  def tensors(self):
    """(detail, value or None) for every tensor of the model after the last invoke.

    The reference kernels add unnamed scratch tensors (im2col buffers, ...)
    at prepare time; they are not part of the model, so they are left out.
    """
    out = []
    for d in self.interpreter.get_tensor_details():
      if not d["name"]:
        continue
      try:
        value = self.interpreter.get_tensor(d["index"])
      except ValueError:
        value = None
      out.append((d, value))
    return out
