"""A QAT-trained model -> full-integer int8 .tflite, from its learned ranges.

No representative dataset: the graph is the raw-op forward with BN folded
(moving statistics), every kernel on its int8 grid (qat.quantize_params) and
a FakeQuantWithMinMaxVars with the learned [min, max] at every quant point
(qat.quant_points); the TFLite converter reads each activation's scale and
zero point from those ops.  The result is checked to be full-integer (only
int8/int32 tensors, int8 input and output), so it runs where a calibrated
model runs (LiteRT, TFLite Micro, the integer-exact forward).
"""

import time

import numpy as np

from mobilenet.tflite import converter
from mobilenet.tflite import model_sidecar
from mobilenet.tflite import runtime

RANGES_FROM = ("training: exponential moving average of the batch min/max "
               "of each quantized tensor (train --qat); no representative "
               "dataset")


def qat_metadata(source):
  """The "qat" section of a checkpoint sidecar (export.py), or None."""
  return (source.metadata or {}).get("qat")


def convert_qat(source, classifier_activation="softmax"):
  """Full-integer int8 .tflite bytes of a ModelSource with a "qat" sidecar
  section ({"granularity", "ranges"})."""
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  from mobilenet.core import qat  # pylint: disable=g-import-not-at-top
  meta = qat_metadata(source)
  if not meta:
    raise converter.ConversionError(
        f"{source.description} was not trained with --qat (no qat ranges in "
        "its sidecar)")
  options = qat.Options(meta["granularity"], {
      k: np.asarray(v, np.float32) for k, v in meta["ranges"].items()})
  model = forward.build(
      source.params, alpha=source.alpha, input_shape=source.input_shape,
      classes=source.classes, classifier_activation=classifier_activation,
      qat=options)
  missing = [p for p in qat.quant_points(model.network)
             if p not in options.ranges or
             not options.ranges[p][1] > options.ranges[p][0]]
  if missing:
    raise converter.ConversionError(
        f"QAT ranges unset for {missing[0]} ({len(missing)} in all): train "
        "at least one step with --qat")
  tflite = converter.convert(model.get_concrete_function(), "int8",
                             trackable=model, granularity=meta["granularity"],
                             fake_quant=True)
  check_full_integer(tflite)
  return tflite


def check_full_integer(tflite):
  """ConversionError unless every tensor is int8 or int32 (biases)."""
  interp = runtime.Model(tflite, use_default_delegates=False).interpreter
  for d in interp.get_tensor_details():
    if d["dtype"] not in (np.int8, np.int32):
      raise converter.ConversionError(
          f"QAT conversion left tensor {d['name']!r} in {d['dtype'].__name__}"
          "; a quant point is missing a range")


def convert_source(source, name=None, classifier_activation="softmax"):
  """converter.convert_source for a QAT checkpoint: a Converted whose
  sidecar says qat, the granularity and where the ranges came from."""
  start = time.perf_counter()
  tflite = convert_qat(source, classifier_activation)
  qmeta = qat_metadata(source)
  meta = model_sidecar.build(tflite, source, "int8", None,
                             classifier_activation, qmeta["granularity"])
  meta["qat"] = {"qat": True, "granularity": qmeta["granularity"],
                 "ranges_from": RANGES_FROM, "ranges": qmeta["ranges"]}
  return converter.Converted(
      name or converter.default_name(source, "int8", qmeta["granularity"])
      + "_qat", tflite, meta,
      time.perf_counter() - start)
