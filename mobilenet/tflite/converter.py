"""Converts the raw-op MobileNetV2 (BN folded) to .tflite, reproducibly.

The input is a concrete function of `forward.build(...)`, never a Keras
model.  Full-integer models are calibrated on real images from a folder,
taken in sorted order and preprocessed exactly as the model expects
(size, channels, normalisation), so identical inputs give identical bytes.
Every model gets a JSON sidecar recording where it came from
(model_sidecar.py).
"""

import dataclasses
import hashlib
import os
import time
import numpy as np

from mobilenet.core import labels as labels_lib
from mobilenet.core import files
from mobilenet.core.files import sha256_file
from mobilenet.core import preprocess
from mobilenet.tflite import model_sidecar
from mobilenet.tflite import runtime

QUANTIZATIONS = ("int8", "uint8", "float16", "dynamic", "float")
FULL_INTEGER = ("int8", "uint8")
# How the int8 weights of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are
# scaled: one scale per output channel (TFLite's default), or one scale per
# tensor, for accelerators and kernels that take a single requantization
# multiplier per layer.
GRANULARITIES = ("per_channel", "per_tensor")
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
DEFAULT_NUM_CALIBRATION = 100


class ConversionError(ValueError):
  """Conversion cannot proceed; the message says why and what to change."""


def default_calibration_dir():
  return labels_lib.data_path("calibration")


normalization_spec = runtime.normalization_spec
normalize = runtime.normalize


# ---- calibration ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Calibration:
  """The representative images: which files, in which order."""
  directory: str
  paths: tuple

  @property
  def files_sha256(self):
    """Hash of (relative name, content hash) of every file, in order."""
    h = hashlib.sha256()
    for p in self.paths:
      rel = os.path.relpath(p, self.directory)
      h.update(f"{rel}\t{sha256_file(p)}\n".encode("utf-8"))
    return h.hexdigest()

  def describe(self):
    return {"dir": model_sidecar.portable_path(self.directory), "count": len(self.paths),
            "order": "sorted", "files_sha256": self.files_sha256}


def calibration_set(directory=None, num=DEFAULT_NUM_CALIBRATION):
  directory = directory or default_calibration_dir()
  if not os.path.isdir(directory):
    raise ConversionError(f"calibration directory {directory} does not exist;"
                          " pass --calibration_dir with a folder of images")
  if not isinstance(num, int) or num < 1:
    raise ConversionError(f"--num_calibration must be >= 1, got {num!r}")
  paths = preprocess.find_images(directory)
  if not paths:
    raise ConversionError(f"calibration directory {directory} has no image "
                          f"files ({', '.join(preprocess.IMAGE_EXTENSIONS)})")
  if len(paths) < num:
    raise ConversionError(
        f"--num_calibration={num} but {directory} has only {len(paths)} "
        "images; lower --num_calibration or add images")
  return Calibration(os.path.abspath(directory), tuple(paths[:num]))


def representative_batch(calibration, input_size, channels, normalization):
  """All calibration images as model input, (n, h, w, c) float32."""
  pixels = preprocess.load_images(calibration.paths, input_size,
                                  channels=channels, mode="raw")
  return np.asarray(normalize(pixels, normalization), np.float32)


# ---- conversion ---------------------------------------------------------------


def convert(concrete_function, quantize, representative=None, trackable=None,
            granularity="per_channel", fake_quant=False):
  """TFLite flatbuffer bytes of `concrete_function` (see make_converter)."""
  converter = make_converter(concrete_function, quantize, representative,
                             trackable, granularity, fake_quant)
  try:
    tflite = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(f"TFLite conversion failed: {e}") from e
  if granularity == "per_tensor":
    check_per_tensor(tflite)
  return tflite


def check_granularity(quantize, granularity):
  if granularity not in GRANULARITIES:
    raise ConversionError(f"--granularity must be one of {GRANULARITIES}, "
                          f"got {granularity!r}")
  if granularity == "per_tensor" and quantize not in FULL_INTEGER:
    raise ConversionError(
        f"--granularity=per_tensor is for full-integer models (--quantize "
        f"int8 or uint8), not --quantize {quantize}")


def weight_scale_counts(tflite):
  """[(op index, op name, number of weight scales)] of every CONV_2D,
  DEPTHWISE_CONV_2D and FULLY_CONNECTED, read from the flatbuffer."""
  from mobilenet.tflite import exact_graph  # pylint: disable=g-import-not-at-top
  graph = exact_graph.read_graph(tflite)
  return [(op.index, op.name, len(graph.tensors[op.inputs[1]].scales))
          for op in graph.ops if op.name in WEIGHTED_OPS]


def check_per_tensor(tflite):
  """The converter's per-tensor switch is experimental: a layer it left
  per-channel would be a model the target hardware cannot run, so it is
  refused instead of written."""
  left = [f"{i} ({name}: {n} scales)"
          for i, name, n in weight_scale_counts(tflite) if n != 1]
  if left:
    raise ConversionError("--granularity=per_tensor: the converter left "
                          f"per-channel weights in op {', '.join(left)}")


def make_converter(concrete_function, quantize, representative=None,
                   trackable=None, granularity="per_channel", fake_quant=False):
  """A configured tf.lite.TFLiteConverter (e.g. for QuantizationDebugger).

  Args:
    concrete_function: takes one float32 NHWC batch (e.g.
      `forward.build(...).get_concrete_function()`).
    quantize: one of QUANTIZATIONS.  "int8"/"uint8": full-integer with
      per-channel weights and int8/uint8 input and output; "float16": float16
      weights; "dynamic": int8 weights, float activations; "float": none.
    representative: float32 array (n, h, w, c) of model inputs, required for
      full-integer; one sample per calibration step, in array order.
    granularity: "per_channel" (TFLite's default) or "per_tensor": one scale
      per weight tensor (full-integer only).
    fake_quant: full-integer from the graph's FakeQuant ranges (QAT), no
      representative dataset.
  """
  if quantize not in QUANTIZATIONS:
    raise ConversionError(f"--quantize must be one of {QUANTIZATIONS}, got "
                          f"{quantize!r}")
  check_granularity(quantize, granularity)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # Passing the owning module keeps the converter on its supported path.
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [concrete_function], trackable)
  if quantize != "float":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  elif quantize in FULL_INTEGER:
    io_type = tf.int8 if quantize == "int8" else tf.uint8
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    if granularity == "per_tensor":
      # TFLiteConverter's only switch for it (TF 2.21); convert() checks the
      # flatbuffer afterwards rather than trusting it.
      converter._experimental_disable_per_channel = True  # pylint: disable=protected-access
    if fake_quant:
      # Ranges from the graph's FakeQuant ops.  Not supported_ops=INT8: that
      # makes the converter demand a representative dataset before it looks
      # at them (qat_export checks the result is full-integer instead).
      return converter
    if representative is None or not len(representative):  # pylint: disable=g-explicit-length-test
      raise ConversionError(f"{quantize} needs calibration images")
    samples = np.asarray(representative, np.float32)
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    # Builtin int8 kernels only: conversion fails rather than leaving a float
    # op behind that the device's integer-only accelerator cannot run.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  return converter


# ---- model sources --------------------------------------------------------


source_field = model_sidecar.source_field


def weights_tag(source):
  """Names the weights in file names: the built-in kinds by kind, a file by
  its stem (a file is never called "imagenet" for its name)."""
  kind = source_field(source, "kind")
  if kind in ("imagenet", "bundled", "random"):
    return kind
  path = source_field(source, "weights_path")
  if path:
    stem = os.path.splitext(os.path.basename(path))[0]
    return "file-" + "".join(c if c.isalnum() or c in "-_." else "_"
                             for c in stem)
  return "custom"


def default_name(source, quantize, granularity="per_channel"):
  size = source.input_size
  # Per-channel keeps its historic name; per-tensor gets a suffix so both
  # can sit in one directory.
  suffix = "_per_tensor" if granularity == "per_tensor" else ""
  return (f"mobilenet_v2_{weights_tag(source)}_a{int(round(source.alpha * 100)):03d}"
          f"_{size}x{size}x{source.channels}_{quantize}{suffix}")


def build_model(source, classifier_activation="softmax"):
  # TensorFlow loads here, not at import: CLIs check their input first.
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  return forward.build(
      source.params, alpha=source.alpha,
      input_shape=(source.input_size, source.input_size, source.channels),
      classes=source.classes, classifier_activation=classifier_activation)


@dataclasses.dataclass
class Converted:
  name: str
  tflite: bytes
  metadata: dict
  seconds: float
  # More outputs written beside the model, file name -> bytes (the micro
  # target's C++ sources).
  files: dict = dataclasses.field(default_factory=dict)


def convert_source(source, quantize, calibration_dir=None,
                   num_calibration=DEFAULT_NUM_CALIBRATION, name=None,
                   classifier_activation="softmax", granularity="per_channel",
                   equalize=False):
  """Converts a ModelSource; returns the bytes and the sidecar dict.
  `equalize` first equalizes the depthwise convs' weight ranges on the
  calibration images (core/equalize.py; for per-tensor int8)."""
  if quantize not in QUANTIZATIONS:
    raise ConversionError(f"--quantize must be one of {QUANTIZATIONS}, got "
                          f"{quantize!r}")
  check_granularity(quantize, granularity)
  trained = (source.metadata or {}).get("qat")
  if equalize and (quantize not in FULL_INTEGER or trained):
    raise ConversionError(
        "--equalize rescales weights for calibrated int8/uint8 conversion; "
        + (f"{source.description} has trained QAT ranges: equalize before "
           "QAT (tools/equalize)" if trained else f"not --quantize={quantize}"))
  if quantize == "int8" and trained:
    # Trained with --qat: its learned ranges and granularity, no calibration.
    if granularity == "per_tensor" and trained["granularity"] != granularity:
      raise ConversionError(
          f"--granularity=per_tensor: {source.description} was trained with "
          f"--qat --granularity={trained['granularity']}; leave --granularity "
          "out (its own is used) or train with --granularity=per_tensor")
    from mobilenet.tflite import qat_export  # pylint: disable=g-import-not-at-top
    return qat_export.convert_source(source, name, classifier_activation)
  start = time.perf_counter()
  calibration = representative = None
  if quantize in FULL_INTEGER:
    calibration = calibration_set(calibration_dir, num_calibration)
    representative = representative_batch(
        calibration, source.input_size, source.channels,
        source_field(source, "normalization"))
  equalized = None
  if equalize:
    from mobilenet.core import equalize as eq  # pylint: disable=g-import-not-at-top
    params, report = eq.equalize_source_params(source, representative)
    source = dataclasses.replace(source, params=params)
    equalized = eq.summary(report, len(representative))
  model = build_model(source, classifier_activation)
  tflite = convert(model.get_concrete_function(), quantize, representative,
                   model, granularity)
  meta = model_sidecar.build(tflite, source, quantize, calibration,
                             classifier_activation, granularity)
  if equalized:
    meta["equalization"] = equalized
  return Converted(name or default_name(source, quantize, granularity)
                   + ("_equalized" if equalize else ""),
                   tflite, meta, time.perf_counter() - start)


def save(converted, directory):
  """Writes <name>.tflite, <name>.json (and `converted.files`) into
  `directory` atomically.

  All go to temp files first; none of them exists unless all were written
  completely.
  """
  outputs = {os.path.join(directory, converted.name + ".tflite"):
             converted.tflite,
             os.path.join(directory, converted.name + ".json"):
             model_sidecar.to_bytes(converted.metadata)}
  for n, data in sorted(converted.files.items()):
    outputs[os.path.join(directory, n)] = data
  return files.atomic_write_all(outputs)
