"""Which weights a tool runs: one `--weights` spec shared by every tool.

    resolve("auto")      ImageNet when obtainable (Keras cache or download),
                         else the bundled model; logs one line saying which.
    resolve("imagenet")  the official Keras ImageNet file (1000 classes).
    resolve("bundled")   data/bundled/mnist_mobilenet_v2.h5, the digit model
                         this project trains itself (works offline).
    resolve("random")    Keras-style seeded random init.
    resolve(PATH)        a Keras-layout .h5, or one of our checkpoints (see
                         checkpoint.py): a .json sidecar, an .h5 with a .json
                         of the same stem, or a directory with model.json.

Alpha, channels and classes of a Keras .h5 come from its weight shapes. Its
input size comes from --input_size, else from the exact official Keras file
name pattern, else 224 — and that last one is said (ModelSource.notes), as is
every other value taken on assumption (e.g. ImageNet names for 1000 outputs).
No file name is read for anything else, and the weights' kind is recorded in
ModelSource.kind, not recovered from a description.
"""

import contextlib
import dataclasses
import io
import os
from typing import List, Optional

from absl import logging

from mobilenet.core import arch
from mobilenet.core import checkpoint
from mobilenet.core.files import sha256_file
from mobilenet.core.files import user_path
from mobilenet.core import labels as labels_lib
from mobilenet.core import params as params_lib
from mobilenet.core import weights as weights_lib

SPECS = ("auto", "imagenet", "bundled", "random")
# What ModelSource.kind can be: the built-in specs, one of our checkpoints,
# or any other Keras-layout weight file.
KINDS = ("imagenet", "bundled", "random", "checkpoint", "keras_file")
BUNDLED_DIR = "bundled"
BUNDLED_NAME = "mnist_mobilenet_v2"
DEFAULT_INPUT_SIZE = 224
class ModelSourceError(ValueError):
  """A --weights spec cannot be used; the message says why and what to do."""


@dataclasses.dataclass
class ModelSource:
  params: dict
  alpha: float
  input_size: int
  channels: int
  classes: Optional[int]  # None for include_top=False
  labels: List[str]       # aligned to the outputs ([] without a top)
  normalization: str
  description: str
  kind: str               # one of KINDS
  weights_path: Optional[str] = None
  weights_sha256: Optional[str] = None
  include_top: bool = True
  metadata: dict = dataclasses.field(default_factory=dict)  # sidecar extras
  # One line per value that was assumed rather than read from the weights.
  notes: List[str] = dataclasses.field(default_factory=list)

  @property
  def input_shape(self):
    return (self.input_size, self.input_size, self.channels)


def bundled_sidecar_path():
  return labels_lib.data_path(os.path.join(BUNDLED_DIR, BUNDLED_NAME + ".json"))


def _display_path(path):
  """Repository-relative for files under data/, else as given."""
  data_root = labels_lib.data_path("")
  full = os.path.abspath(path)
  if full.startswith(data_root):
    return os.path.join("data", os.path.relpath(full, data_root))
  return path


def _checked(fn, *args):
  try:
    return fn(*args)
  except ValueError as e:
    raise ModelSourceError(str(e)) from None


def _default_labels(classes, notes, read_names=False):
  """The names of a source without its own; `notes` gets what was assumed
  unless the names are known to be right (`read_names`)."""
  if classes is None:
    return []
  names, note = labels_lib.default_names(classes)
  if not read_names:
    notes.append(note)
  return names


# ---- imagenet / random ------------------------------------------------------


def _imagenet(alpha, input_size, include_top, cache_dir=None, quiet=False):
  alpha = 1.0 if alpha is None else alpha
  input_size = DEFAULT_INPUT_SIZE if input_size is None else input_size
  if not any(abs(alpha - a) < 1e-9 for a in arch.KERAS_ALPHAS):
    raise ModelSourceError(
        f"ImageNet weights exist only for alpha in {arch.KERAS_ALPHAS}, got "
        f"{alpha}; pass one of those or --weights=random/PATH.")
  # Keras loads the 224 file for sizes it has no file for; so do we.
  rows = input_size if input_size in arch.KERAS_ROWS else DEFAULT_INPUT_SIZE
  try:
    with (contextlib.redirect_stdout(io.StringIO()) if quiet  # get_file
          else contextlib.nullcontext()):                     # prints
      path = weights_lib.fetch(alpha, rows, include_top, cache_dir)
  except weights_lib.WeightsUnavailableError as e:
    error = ModelSourceError(str(e))
    error.reason = e.reason
    raise error from None
  net = arch.derive(alpha, 3, 1000, include_top)
  classes = 1000 if include_top else None
  return ModelSource(
      params=_checked(params_lib.load_h5, path, net), alpha=alpha,
      input_size=input_size, channels=3, classes=classes,
      labels=_default_labels(classes, [], read_names=True),
      normalization="tf", kind="imagenet",
      description=(f"ImageNet MobileNetV2 alpha={alpha} "
                   f"({os.path.basename(path)})"),
      weights_path=path, weights_sha256=sha256_file(path),
      include_top=include_top)


def _random(alpha, input_size, include_top, channels, classes, seed):
  # Untrained weights have nothing to read; their defaults are no guess.
  alpha = 1.0 if alpha is None else alpha
  input_size = DEFAULT_INPUT_SIZE if input_size is None else input_size
  channels = 3 if channels is None else channels
  classes = (1000 if classes is None else classes) if include_top else None
  net = _checked(arch.derive, alpha, channels, classes or 1, include_top)
  return ModelSource(
      params=params_lib.init(net, seed), alpha=alpha, input_size=input_size,
      channels=channels, classes=classes,
      labels=_default_labels(classes, [], read_names=True),
      normalization="tf", kind="random",
      description=f"random MobileNetV2 alpha={alpha} (seed {seed}, untrained)",
      include_top=include_top)


# ---- files ------------------------------------------------------------------


def _load(path, alpha, channels, classes, include_top):
  if include_top and classes is None:
    raise ModelSourceError(
        f"{path} has no classifier (a no-top file); use it with "
        "include_top=False.")
  net = _checked(arch.derive, alpha, channels, classes or 1, include_top)
  return _checked(params_lib.load_h5, path, net)


def _keras_h5(path, alpha, input_size, include_top):
  try:
    alpha, channels, classes = params_lib.h5_layout(path, alpha)
  except ValueError as e:
    if alpha is None:
      raise ModelSourceError(str(e)) from None
    file_alpha = _checked(params_lib.h5_layout, path)[0]
    raise ModelSourceError(
        f"{path} holds alpha={file_alpha} weights, but alpha={alpha} was "
        f"requested; drop --alpha or pass --alpha={file_alpha}.") from None
  notes = []
  if input_size is None:
    input_size = weights_lib.official_input_size(path, alpha)
  if input_size is None:
    input_size = DEFAULT_INPUT_SIZE
    notes.append(f"input size {input_size} (assumed; pass --input_size)")
  params = _load(path, alpha, channels, classes, include_top)
  classes = classes if include_top else None
  return ModelSource(
      params=params, alpha=alpha, input_size=input_size, channels=channels,
      classes=classes, labels=_default_labels(classes, notes),
      normalization="tf", kind="keras_file",
      description=f"Keras weight file {path} (alpha={alpha})",
      weights_path=path, weights_sha256=sha256_file(path),
      include_top=include_top, notes=notes)


def _checkpoint(json_path, alpha, input_size, include_top, kind="checkpoint",
                what=None):
  meta = _checked(checkpoint.read_sidecar, json_path)
  path = meta["weights_file"]
  digest = _checked(checkpoint.verified_digest, json_path, meta)
  file_alpha = float(meta["alpha"])
  if alpha is not None and abs(alpha - file_alpha) > 1e-9:
    raise ModelSourceError(
        f"{json_path} is an alpha={file_alpha} model, but alpha={alpha} was "
        "requested; drop --alpha or pick other weights.")
  classes = int(meta["classes"])
  try:
    labels = labels_lib.align(list(meta["labels"]), classes)
  except ValueError as e:
    raise ModelSourceError(f"{json_path}: {e}") from None
  params = _load(path, file_alpha, int(meta["channels"]), classes,
                 include_top)
  if what is None:
    what = f"checkpoint {_display_path(path)}"
  return ModelSource(
      params=params, alpha=file_alpha,
      input_size=int(meta["input_size"]) if input_size is None else input_size,
      channels=int(meta["channels"]),
      classes=classes if include_top else None,
      labels=labels if include_top else [],
      normalization=meta["normalization"], kind=kind,
      description=f"{what} (alpha={file_alpha}, {meta['input_size']} px)",
      weights_path=path, weights_sha256=digest, include_top=include_top,
      metadata={k: v for k, v in meta.items() if k != "labels"})


def _bundled(alpha, input_size, include_top):
  json_path = bundled_sidecar_path()
  if not os.path.isfile(json_path):
    raise ModelSourceError(
        f"the bundled model is missing ({_display_path(json_path)}); add "
        "//data/bundled:mnist_mobilenet_v2 to the target's data.")
  h5 = _display_path(os.path.join(os.path.dirname(json_path),
                                  BUNDLED_NAME + ".h5"))
  return _checkpoint(json_path, alpha, input_size, include_top,
                     kind="bundled", what=f"bundled MNIST model ({h5})")


def _path(spec, alpha, input_size, include_top):
  if os.path.isdir(spec):
    json_path = os.path.join(spec, "model.json")
    if os.path.isfile(json_path):
      return _checkpoint(json_path, alpha, input_size, include_top)
    raise ModelSourceError(
        f"{spec} is a directory without model.json; pass a weight file.")
  if not os.path.exists(spec):
    raise ModelSourceError(
        f"--weights={spec}: no such file; use auto, imagenet, bundled, random "
        "or the path of a .h5 / .json checkpoint.")
  if spec.endswith(".json"):
    return _checkpoint(spec, alpha, input_size, include_top)
  sidecar = checkpoint.sidecar_path(spec)
  if os.path.isfile(sidecar):
    return _checkpoint(sidecar, alpha, input_size, include_top)
  return _keras_h5(spec, alpha, input_size, include_top)


def _auto(alpha, input_size, include_top, cache_dir):
  try:
    source = _imagenet(alpha, input_size, include_top, cache_dir, quiet=True)
  except ModelSourceError as e:
    source = _bundled(alpha, input_size, include_top)
    logging.info("weights=auto: using the %s because ImageNet weights are "
                 "unavailable: %s", source.description,
                 getattr(e, "reason", str(e)))
  else:
    logging.info("weights=auto: using %s (found in the Keras cache or "
                 "downloaded).", source.description)
  return source


def with_labels(source, labels_path):
  """`source` with the names in `labels_path`, aligned to its outputs (a
  leading background line for 1001 outputs is handled as `infer` does)."""
  if not source.include_top:
    raise ModelSourceError("--labels needs a model with a classifier.")
  try:
    names = labels_lib.align(labels_lib.load_labels(labels_path),
                             source.classes)
  except labels_lib.LabelError as e:
    raise ModelSourceError(f"--labels: {e}") from None
  notes = [n for n in source.notes if not n.startswith("labels:")]
  return dataclasses.replace(source, labels=names, notes=notes)


def user_spec(spec):
  """A --weights value as the user meant it: a built-in spec unchanged, a
  path relative to their shell (see files.user_path)."""
  return spec if spec in SPECS else user_path(spec)


def resolve(spec, *, alpha=None, input_size=None, include_top=True,
            channels=None, classes=None, seed=0, cache_dir=None, labels=None):
  """The weights `spec` names, ready for forward.apply / build.

  alpha / input_size: None = what the weights imply (ImageNet and random
  default to 1.0 / 224).  channels / classes / seed apply to "random" only;
  cache_dir overrides the Keras cache root for "imagenet" / "auto"; labels is
  the path of a class-names file that replaces the weights' own names.
  Raises ModelSourceError with a one-line message.
  """
  alpha = None if alpha is None else _checked(arch.validate_alpha, alpha)
  if input_size is not None:
    _checked(arch.validate_input_size, input_size, input_size)
  if not isinstance(spec, str) or not spec:
    raise ModelSourceError(
        f"weights must be one of {SPECS} or a file path, got {spec!r}.")
  if spec == "imagenet":
    source = _imagenet(alpha, input_size, include_top, cache_dir)
  elif spec == "bundled":
    source = _bundled(alpha, input_size, include_top)
  elif spec == "random":
    source = _random(alpha, input_size, include_top, channels, classes, seed)
  elif spec == "auto":
    source = _auto(alpha, input_size, include_top, cache_dir)
  else:
    source = _path(spec, alpha, input_size, include_top)
  return source if labels is None else with_labels(source, labels)
