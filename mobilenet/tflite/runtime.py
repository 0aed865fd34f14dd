"""Runs image-classification .tflite models with LiteRT.

`Model` accepts any classifier flatbuffer: float32, int8 or uint8 input, any
input size, 1 or 3 channels.  Callers pass normalised float images (or
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
  BACKEND = "ai-edge-litert"
except ImportError:  # pragma: no cover - LiteRT is a declared dependency
  import tensorflow as _tf  # pylint: disable=g-import-not-at-top
  Interpreter = _tf.lite.Interpreter
  _NO_DELEGATES = _tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
  BACKEND = "tensorflow"

from mobilenet.core import preprocess

FILE_IDENTIFIER = b"TFL3"
# Root offset (4) + identifier (4) + the smallest possible table.
_MIN_SIZE = 16


class ModelFileError(ValueError):
  """The .tflite file is missing, not a TFLite model, or damaged."""


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


def default_model():
  """The bundled int8 digit model that //mobilenet/tflite:mobilenet_v2_int8
  builds: beside this file (runfiles, the wheel) or in the tree's bazel-bin."""
  here = os.path.dirname(os.path.abspath(__file__))
  for d in (here, os.path.join(here, "..", "..", "bazel-bin", "mobilenet",
                               "tflite")):
    path = os.path.normpath(os.path.join(d, DEFAULT_MODEL))
    if os.path.isfile(path):
      return path
  raise ModelFileError(
      "the default model is not built; run `tools/bazel build "
      "//mobilenet/tflite:mobilenet_v2_int8` or pass --model")


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


def normalization_spec(normalization):
  """{"mode": ..., "mean": ..., "std": ...} from a mode name or a dict."""
  if normalization is None:
    return {"mode": "tf"}
  spec = ({"mode": normalization} if isinstance(normalization, str)
          else dict(normalization))
  if spec.get("mode") not in preprocess.MODES:
    raise ValueError(f"unknown normalization {normalization!r}; mode must be "
                     f"one of {preprocess.MODES}")
  return spec


def normalize(pixels, normalization):
  """Model input from uint8 pixels, per a normalization spec."""
  spec = normalization_spec(normalization)
  return preprocess.normalize(pixels, mode=spec["mode"],
                              mean=spec.get("mean"), std=spec.get("std"))


def _quant(detail):
  scale, zero_point = detail["quantization"]
  return float(scale), int(zero_point)


def quantize(x, scale, zero_point, dtype):
  """Float -> integer with TFLite's rounding (half away from zero)."""
  info = np.iinfo(dtype)
  v = np.asarray(x, np.float64) / scale
  # np.round would round half to even; TFLite rounds half away from zero.
  q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
  return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
  return (np.asarray(q, np.float64) - zero_point).astype(np.float32) * np.float32(scale)


class Model:
  """One .tflite classifier (path or bytes) with float in, float out."""

  def __init__(self, model, num_threads=None, preserve_all_tensors=False,
               use_default_delegates=None):
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
      use_default_delegates = not preserve_all_tensors
    kwargs = {}
    if not use_default_delegates:
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
    shape = tuple(int(v) for v in self.input["shape"])
    if len(shape) != 4 or shape[-1] not in (1, 3):
      raise ModelFileError(f"{name}: input shape {shape} is not an NHWC image"
                           " with 1 or 3 channels")
    if np.dtype(self.input["dtype"]) not in (np.float32, np.int8, np.uint8):
      raise ModelFileError(f"{name}: unsupported input type "
                           f"{np.dtype(self.input['dtype']).name}")
    if len(self.output["shape"]) != 2:
      raise ModelFileError(f"{name}: output shape {tuple(self.output['shape'])}"
                           " is not (batch, classes)")
    self.input_shape = shape
    self.input_size = shape[1:3]
    self.channels = shape[3]
    self.num_classes = int(self.output["shape"][-1])
    self.input_dtype = np.dtype(self.input["dtype"])
    self.output_dtype = np.dtype(self.output["dtype"])

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

  # ---- inference --------------------------------------------------------

  def _prepare(self, x):
    if self.input_dtype == np.float32:
      return np.asarray(x, np.float32)
    scale, zp = _quant(self.input)
    if scale == 0:
      raise ValueError("model has an integer input without quantization "
                       "parameters; feed it with predict_pixels(..., 'raw')")
    return quantize(x, scale, zp, self.input_dtype)

  def _run(self, batch):
    """Runs already-typed input, one image at a time (fixed batch of 1
    models are the norm; larger fixed batches are filled in chunks)."""
    n_fixed = self.input_shape[0]
    results = []
    for start in range(0, len(batch), n_fixed):
      chunk = batch[start:start + n_fixed]
      pad = n_fixed - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
      self.interpreter.set_tensor(self.input["index"], chunk)
      self.interpreter.invoke()
      out = self.interpreter.get_tensor(self.output["index"])
      results.append(out[:n_fixed - pad] if pad else out)
    return np.concatenate(results)

  def _check_batch(self, images):
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[None]
    want = self.input_shape[1:]
    if images.ndim != 4 or images.shape[1:] != want:
      raise ValueError(f"images must have shape (n,) + {want}, got "
                       f"{images.shape}")
    return images

  def predict(self, images):
    """Scores (n, classes) float32 for normalised float images (n, h, w, c)."""
    images = self._check_batch(images)
    raw = self._run(self._prepare(images))
    if self.output_dtype == np.float32:
      return raw.astype(np.float32)
    scale, zp = _quant(self.output)
    if scale == 0:
      return raw.astype(np.float32)
    return dequantize(raw, scale, zp)

  def predict_pixels(self, pixels, normalization="tf"):
    """As `predict`, from uint8 pixels and the model's normalisation."""
    pixels = self._check_batch(pixels)
    spec = normalization_spec(normalization)
    if spec["mode"] == "raw" or (self.input_dtype != np.float32 and
                                 _quant(self.input)[0] == 0):
      raw = self._run(pixels.astype(self.input_dtype))
      if self.output_dtype == np.float32 or _quant(self.output)[0] == 0:
        return raw.astype(np.float32)
      return dequantize(raw, *_quant(self.output))
    return self.predict(normalize(pixels, spec))

  def load_images(self, paths):
    """uint8 pixels of the files at the model's size and channel count."""
    return preprocess.load_images(paths, self.input_size,
                                  channels=self.channels, mode="raw")

  # ---- intermediate tensors --------------------------------------------

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
