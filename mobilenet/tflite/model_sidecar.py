"""The JSON sidecar beside every converted .tflite: where the model came from
(weights kind, path, sha256), its I/O contract (size, channels, normalization,
quantization parameters), labels, calibration and library versions."""

import hashlib
import importlib.metadata
import json
import os

import numpy as np

from mobilenet.tflite import runtime

FORMAT = 1


def source_field(source, name, default=None):
  return getattr(source, name, default)


def repo_root():
  return os.path.normpath(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def portable_path(path):
  """Repo-relative when inside the repository (same in runfiles and
  sandboxes, so sidecars of identical conversions are identical)."""
  if path is None:
    return None
  path = os.path.abspath(path)
  rel = os.path.relpath(path, repo_root())
  return path if rel.startswith("..") else rel


def _version(dist):
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def library_versions():
  return {"tensorflow": _version("tensorflow"),
          "ai-edge-litert": _version("ai-edge-litert"),
          "numpy": np.__version__}


def _io_details(tflite_bytes):
  return runtime.Model(tflite_bytes,
                       use_default_delegates=False).describe_io()


def _weights(quantize, granularity):
  """(weights_quantization, granularity) as the sidecar records them;
  granularity is None where there are no int8 weights."""
  if quantize in ("float16", "float"):
    return {"float16": "float16", "float": "float32"}[quantize], None
  return "int8 " + granularity.replace("_", "-"), granularity


def build(tflite_bytes, source, quantize, calibration=None,
          classifier_activation="softmax", granularity="per_channel"):
  io = _io_details(tflite_bytes)
  weights_quantization, granularity = _weights(quantize, granularity)
  labels = source_field(source, "labels")
  return {
      "format": FORMAT,
      "tflite_sha256": hashlib.sha256(tflite_bytes).hexdigest(),
      "tflite_bytes": len(tflite_bytes),
      "weights": {
          "kind": source_field(source, "kind"),
          "description": source_field(source, "description"),
          "path": portable_path(source_field(source, "weights_path")),
          "sha256": source_field(source, "weights_sha256"),
      },
      "alpha": source.alpha,
      "input_size": [source.input_size, source.input_size],
      "channels": source.channels,
      "classes": source.classes,
      "normalization": runtime.normalization_spec(source_field(source, "normalization")),
      "output_activation": classifier_activation or "linear",
      "quantization": quantize,
      "weights_quantization": weights_quantization,
      "granularity": granularity,
      "calibration": calibration.describe() if calibration else None,
      "input": io["input"],
      "output": io["output"],
      "labels": list(labels) if labels is not None else None,
      "versions": library_versions(),
  }


def to_bytes(metadata):
  return (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode()
