"""Every kind of model `evaluate` scores, behind one interface: uint8 pixels
of the model's own size and channels in, probabilities out.

    bundled | imagenet | random | auto | PATH.h5 | PATH.json | DIR/model.json
        the float raw-op forward (model_source + forward.build)
    DIR with saved_model.pb      a SavedModel's serving_default (TensorFlow)
    PATH.tflite                  LiteRT (runtime.Model); `micro:PATH.tflite`
                                 or --runtime=micro: TFLite Micro
                                 (micro_runtime.MicroModel)

Each loader reuses the library the other tools run, so a score here is the
score `train eval`, `infer` or `fidelity_report` would give.
"""

import dataclasses
import os
import re
from typing import Callable, List

from mobilenet.core import labels as labels_lib
from mobilenet.core import model_source
from mobilenet.tflite import classifier

RUNTIMES = ("litert", "micro")


class ModelError(ValueError):
  """A --model cannot be used; the message names it and the fix."""


@dataclasses.dataclass
class Model:
  name: str            # shown in the report, e.g. "bundled (float)"
  slug: str            # file-name form of `name`
  kind: str            # float | saved_model | litert | micro
  input_size: int
  channels: int
  labels: List[str]    # aligned to the outputs
  predict: Callable    # uint8 (n, h, w, c) -> float (n, classes)
  notes: List[str] = dataclasses.field(default_factory=list)


def _slug(text):
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _split_runtime(spec, default_runtime):
  """(path, runtime, whether the spec named the runtime)."""
  m = re.match(r"^(litert|micro):(.+)$", spec)
  return (m[2], m[1], True) if m else (spec, default_runtime, False)


def _float(spec, labels_path):
  source = model_source.resolve(spec, labels=labels_path)
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  model = forward.build(source.params, alpha=source.alpha,
                        input_shape=source.input_shape, batch_size=None,
                        classes=source.classes)
  normalization = source.normalization
  tag = spec if spec in model_source.SPECS else os.path.basename(
      spec.rstrip("/"))
  return Model(
      name=f"{tag} (float)", slug=_slug(tag), kind="float",
      input_size=source.input_size, channels=source.channels,
      labels=list(source.labels), notes=list(source.notes),
      predict=lambda px: model(classifier.normalize(px, normalization)
                               ).numpy())


def _tflite(path, runtime_name, labels_path):
  from mobilenet.tflite import runtime  # pylint: disable=g-import-not-at-top
  if runtime_name == "micro":
    from mobilenet.tflite import micro_runtime  # pylint: disable=g-import-not-at-top
    interpreter = micro_runtime.MicroModel(path)
    shown = "TFLM"
  else:
    interpreter = runtime.Model(path)
    shown = "LiteRT"
  meta = runtime.read_sidecar(path)
  names, note = runtime.class_names(interpreter.num_classes, meta,
                                    labels_path)
  normalization = (meta or {}).get("normalization", "tf")
  notes = [note] if note else []
  if meta is None:
    notes.append(f"{path}: no sidecar; normalization 'tf' ([-1, 1]) assumed")
  stem = os.path.splitext(os.path.basename(path))[0]
  height, width = interpreter.input_size
  if height != width:
    raise ModelError(f"{path}: input {height}x{width} is not square; "
                     "evaluate needs a square model input")
  return Model(
      name=f"{stem}.tflite ({shown})", slug=_slug(f"{stem}_{runtime_name}"),
      kind=runtime_name, input_size=height, channels=interpreter.channels,
      labels=names, notes=notes,
      predict=lambda px: interpreter.predict_pixels(px, normalization))


def _saved_model(path, labels_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ModelError(f"{path}: TensorFlow cannot load this SavedModel "
                     f"({first}); re-export it with convert "
                     "--target=saved_model") from None
  fn = loaded.signatures.get("serving_default")
  spec = fn.structured_input_signature[1] if fn is not None else {}
  if len(spec) != 1 or "probabilities" not in fn.structured_outputs:
    raise ModelError(f"{path}: serving_default must take one image tensor "
                     "and return 'probabilities' (convert "
                     "--target=saved_model writes such a model)")
  (key, tensor), = spec.items()
  shape = tensor.shape.as_list()
  if (tensor.dtype != tf.uint8 or len(shape) != 4 or shape[1] != shape[2]
      or shape[1] is None or shape[3] not in (1, 3)):
    raise ModelError(f"{path}: serving_default takes {tensor.dtype.name} "
                     f"{shape}; evaluate feeds uint8 [N, S, S, 1 or 3] pixels")
  classes = int(fn.structured_outputs["probabilities"].shape[-1])
  asset = os.path.join(path, "assets", "labels.txt")
  notes = []
  if labels_path or not os.path.isfile(asset):
    from mobilenet.tflite import runtime  # pylint: disable=g-import-not-at-top
    names, note = runtime.class_names(classes, None, labels_path)
    notes += [note] if note else []
  else:
    names = labels_lib.align(labels_lib.load_labels(asset), classes)
  stem = os.path.basename(os.path.normpath(path))
  return Model(
      name=f"{stem} (SavedModel)", slug=_slug(f"{stem}_saved_model"),
      kind="saved_model", input_size=shape[1], channels=shape[3],
      labels=names, notes=notes,
      predict=lambda px: fn(**{key: tf.constant(px)})["probabilities"].numpy())


def name_apart(models, specs):
  """Models whose report names collide (m.tflite from two folders) are shown
  with the path as given instead of the file name, so no row is ambiguous."""
  names = [m.name for m in models]
  for m, spec in zip(models, specs):
    if names.count(m.name) > 1:
      path = _split_runtime(spec, "litert")[0].rstrip("/")
      base = os.path.basename(path)
      m.name = m.name.replace(base, path, 1) if base in m.name else (
          f"{path}: {m.name}")


def load(spec, default_runtime="litert", labels_path=None):
  """The Model a --model value names; ModelError / ValueError if unusable."""
  path, runtime_name, named = _split_runtime(spec, default_runtime)
  path = model_source.user_spec(path)
  if path.endswith(".tflite") or named:
    if not os.path.isfile(path):
      raise ModelError(f"--model={spec}: no such .tflite file")
    try:
      return _tflite(path, runtime_name, labels_path)
    except classifier.ModelFileError as e:
      raise ModelError(f"--model={spec}: {e}") from None
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return _saved_model(path, labels_path)
  if os.path.isdir(path) and not os.path.isfile(
      os.path.join(path, "model.json")):
    raise ModelError(f"--model={spec}: a directory with neither "
                     "saved_model.pb nor model.json; pass a SavedModel, a "
                     ".tflite, a .h5 or a checkpoint")
  try:
    return _float(path, labels_path)
  except model_source.ModelSourceError as e:
    raise ModelError(f"--model={spec}: {e}") from None
