"""Which weights a tool runs: one `--weights` spec shared by every tool.

    resolve("auto")      ImageNet when obtainable (Keras cache or download),
                         else the bundled model; logs one line saying which.
    resolve("imagenet")  the official Keras ImageNet file (1000 classes).
    resolve("bundled")   data/bundled/mnist_mobilenet_v2.h5, the digit model
                         this project trains itself (works offline).
    resolve("random")    Keras-style seeded random init.
    resolve(PATH)        an official Keras .h5 (alpha/channels/classes read
                         from its shapes), or one of our checkpoints: a .json
                         sidecar or an .h5 with a .json of the same stem.

Checkpoint sidecar (JSON), written next to the .h5 by the trainer:

    {"format": "mobilenet_v2_checkpoint", "version": 1,
     "weights_file": "mnist_mobilenet_v2.h5",    # relative to the sidecar
     "weights_sha256": "...",
     "alpha": 0.35, "input_size": 32, "channels": 1, "classes": 10,
     "labels": ["0", ...]  or  "labels_file": "../mnist_labels.txt",
     "normalization": "tf",
     ... free-form provenance: "train_command", "heldout_accuracy", ...}
"""

import contextlib
import dataclasses
import io
import json
import os
from typing import List, Optional

from absl import logging
import h5py

from mobilenet.core import arch
from mobilenet.core.files import sha256_file
from mobilenet.core import labels as labels_lib
from mobilenet.core import params as params_lib

SPECS = ("auto", "imagenet", "bundled", "random")
SIDECAR_FORMAT = "mobilenet_v2_checkpoint"
SIDECAR_VERSION = 1
BUNDLED_DIR = "bundled"
BUNDLED_NAME = "mnist_mobilenet_v2"
NORMALIZATIONS = ("tf",)  # [-1, 1] as keras.applications.mobilenet_v2
# Alphas tried when an .h5 carries no sidecar: every Keras width, then a grid.
_CANDIDATE_ALPHAS = tuple(arch.KERAS_ALPHAS) + tuple(
    round(0.05 * i, 2) for i in range(1, 61))


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
  weights_path: Optional[str] = None
  weights_sha256: Optional[str] = None
  include_top: bool = True
  metadata: dict = dataclasses.field(default_factory=dict)  # sidecar extras

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


def _check_alpha(alpha):
  if alpha is None:
    return None
  try:
    return arch.validate_alpha(alpha)
  except ValueError as e:
    raise ModelSourceError(str(e)) from None


def _check_size(input_size):
  if input_size is None:
    return None
  try:
    arch.validate_input_size(input_size, input_size)
  except ValueError as e:
    raise ModelSourceError(str(e)) from None
  return input_size


def _default_labels(classes):
  if classes is None:
    return []
  if classes == 1000:
    return labels_lib.imagenet_labels()
  return [str(i) for i in range(classes)]


# ---- imagenet / random ------------------------------------------------------


def _imagenet(alpha, input_size, include_top, cache_dir=None, quiet=False):
  from mobilenet.core import weights as weights_lib  # pylint: disable=g-import-not-at-top
  alpha = 1.0 if alpha is None else alpha
  input_size = 224 if input_size is None else input_size
  if not any(abs(alpha - a) < 1e-9 for a in arch.KERAS_ALPHAS):
    raise ModelSourceError(
        f"ImageNet weights exist only for alpha in {arch.KERAS_ALPHAS}, got "
        f"{alpha}; pass one of those or --weights=random/PATH.")
  # Keras loads the 224 file for sizes it has no file for; so do we.
  rows = input_size if input_size in arch.KERAS_ROWS else 224
  try:
    if quiet:  # keras.utils.get_file prints "Downloading data from ..."
      with contextlib.redirect_stdout(io.StringIO()):
        path = weights_lib.fetch(alpha, rows, include_top, cache_dir)
    else:
      path = weights_lib.fetch(alpha, rows, include_top, cache_dir)
  except weights_lib.WeightsUnavailableError as e:
    raise ModelSourceError(str(e)) from None
  net = arch.derive(alpha, 3, 1000, include_top)
  try:
    params = params_lib.load_h5(path, net)
  except ValueError as e:
    raise ModelSourceError(str(e)) from None
  classes = 1000 if include_top else None
  return ModelSource(
      params=params, alpha=alpha, input_size=input_size, channels=3,
      classes=classes, labels=_default_labels(classes), normalization="tf",
      description=(f"ImageNet MobileNetV2 alpha={alpha} "
                   f"({os.path.basename(path)})"),
      weights_path=path, weights_sha256=sha256_file(path),
      include_top=include_top)


def _random(alpha, input_size, include_top, channels, classes, seed):
  alpha = 1.0 if alpha is None else alpha
  input_size = 224 if input_size is None else input_size
  channels = 3 if channels is None else channels
  classes = (1000 if classes is None else classes) if include_top else None
  try:
    net = arch.derive(alpha, channels, classes or 1, include_top)
  except ValueError as e:
    raise ModelSourceError(str(e)) from None
  return ModelSource(
      params=params_lib.init(net, seed), alpha=alpha, input_size=input_size,
      channels=channels, classes=classes, labels=_default_labels(classes),
      normalization="tf",
      description=f"random MobileNetV2 alpha={alpha} (seed {seed}, untrained)",
      include_top=include_top)


# ---- files ------------------------------------------------------------------


def _h5_shapes(path):
  """{layer: {weight: shape}} of a Keras weight file, no net needed."""
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ModelSourceError(
        f"{path}: not a readable HDF5 weight file ({e}).") from None
  shapes = {}
  with f:
    root = f["model_weights"] if ("layer_names" not in f.attrs and
                                  "model_weights" in f) else f

    def visit(name, obj):
      if isinstance(obj, h5py.Dataset):
        layer = name.split("/")[0]
        key = name.split("/")[-1].split(":")[0]
        shapes.setdefault(layer, {})[key] = tuple(obj.shape)

    root.visititems(visit)
  return shapes


def _file_shape(shapes, layer, key):
  got = shapes.get(layer, {})
  if key == "depthwise_kernel" and key not in got:
    key = "kernel"  # Keras 3 saves depthwise kernels as "kernel"
  return tuple(got.get(key, ()))


def _infer_from_h5(path, alpha):
  """(alpha, channels, classes-or-None) that fit the file's shapes."""
  shapes = _h5_shapes(path)
  conv1 = shapes.get("Conv1", {}).get("kernel")
  if conv1 is None or len(conv1) != 4:
    raise ModelSourceError(
        f"{path}: no 'Conv1/kernel' weight; not a Keras MobileNetV2 weight "
        "file.")
  channels = conv1[2]
  pred = shapes.get("predictions", {}).get("kernel")
  classes = pred[-1] if pred is not None else None
  candidates = (alpha,) if alpha is not None else _CANDIDATE_ALPHAS
  for a in candidates:
    try:
      net = arch.derive(a, channels, classes or 1, classes is not None)
    except ValueError as e:
      raise ModelSourceError(f"{path}: {e}") from None
    if all(_file_shape(shapes, layer, k) == tuple(s)
           for layer, ws in net.weight_shapes().items()
           for k, s in ws.items()):
      return a, channels, classes
  if alpha is not None:
    raise ModelSourceError(
        f"{path}: the weight shapes do not fit MobileNetV2 alpha={alpha}; "
        "leave --alpha out to infer it from the file.")
  raise ModelSourceError(
      f"{path}: the weight shapes fit no MobileNetV2 width; not a Keras "
      "MobileNetV2 weight file?")


def _load(path, alpha, channels, classes, include_top):
  if include_top and classes is None:
    raise ModelSourceError(
        f"{path} has no classifier (a no-top file); use it with "
        "include_top=False.")
  net = arch.derive(alpha, channels, classes or 1, include_top)
  try:
    return params_lib.load_h5(path, net)
  except ValueError as e:
    raise ModelSourceError(str(e)) from None


def _keras_h5(path, alpha, input_size, include_top):
  alpha, channels, classes = _infer_from_h5(path, alpha)
  if input_size is None:
    # Official names end in _<alpha>_<rows>[_no_top].h5.
    stem = os.path.basename(path)[:-3].replace("_no_top", "")
    tail = stem.rsplit("_", 1)[-1]
    input_size = int(tail) if tail.isdigit() and int(tail) >= 32 else 224
  params = _load(path, alpha, channels, classes, include_top)
  classes = classes if include_top else None
  return ModelSource(
      params=params, alpha=alpha, input_size=input_size, channels=channels,
      classes=classes, labels=_default_labels(classes), normalization="tf",
      description=f"Keras weight file {path} (alpha={alpha})",
      weights_path=path, weights_sha256=sha256_file(path),
      include_top=include_top)


def read_sidecar(json_path):
  """The sidecar dict, checked; `weights_file` made absolute."""
  try:
    with open(json_path, encoding="utf8") as f:
      meta = json.load(f)
  except FileNotFoundError:
    raise ModelSourceError(f"{json_path}: no such file.") from None
  except (OSError, ValueError) as e:
    raise ModelSourceError(
        f"{json_path}: not a readable JSON sidecar ({e}).") from None
  if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
    raise ModelSourceError(
        f"{json_path}: not a MobileNetV2 checkpoint sidecar (needs "
        f"\"format\": \"{SIDECAR_FORMAT}\").")
  missing = [k for k in ("weights_file", "alpha", "input_size", "channels",
                         "classes", "normalization") if k not in meta]
  if missing:
    raise ModelSourceError(f"{json_path}: sidecar lacks {missing}.")
  if "labels" not in meta and "labels_file" not in meta:
    raise ModelSourceError(f"{json_path}: sidecar needs labels or labels_file.")
  if meta["normalization"] not in NORMALIZATIONS:
    raise ModelSourceError(
        f"{json_path}: unknown normalization {meta['normalization']!r} "
        f"(known: {NORMALIZATIONS}).")
  base = os.path.dirname(os.path.abspath(json_path))
  meta = dict(meta)
  meta["weights_file"] = os.path.join(base, meta["weights_file"])
  if "labels" not in meta:
    labels_path = os.path.join(base, meta["labels_file"])
    try:
      meta["labels"] = labels_lib.load_labels(labels_path)
    except (OSError, ValueError) as e:
      raise ModelSourceError(f"{json_path}: labels_file: {e}") from None
  return meta


def write_sidecar(json_path, weights_path, *, alpha, input_size, channels,
                  labels, normalization="tf", **extra):
  """Writes the sidecar for `weights_path` (temp file + rename)."""
  meta = {
      "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION,
      "weights_file": os.path.relpath(os.path.abspath(weights_path),
                                      os.path.dirname(os.path.abspath(
                                          json_path))),
      "weights_sha256": sha256_file(weights_path),
      "alpha": float(alpha), "input_size": int(input_size),
      "channels": int(channels), "classes": len(labels),
      "labels": list(labels), "normalization": normalization,
  }
  meta.update(extra)
  tmp = json_path + ".tmp"
  with open(tmp, "w", encoding="utf8") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
  os.replace(tmp, json_path)
  return meta


def _checkpoint(json_path, alpha, input_size, include_top, what=None):
  meta = read_sidecar(json_path)
  path = meta["weights_file"]
  if not os.path.isfile(path):
    raise ModelSourceError(f"{json_path}: weights file {path} is missing.")
  digest = sha256_file(path)
  if meta.get("weights_sha256") and meta["weights_sha256"] != digest:
    raise ModelSourceError(
        f"{path}: sha256 {digest[:12]}... does not match its sidecar "
        f"{json_path} ({meta['weights_sha256'][:12]}...); the file is "
        "corrupt or was replaced.")
  file_alpha = float(meta["alpha"])
  if alpha is not None and abs(alpha - file_alpha) > 1e-9:
    raise ModelSourceError(
        f"{json_path} is an alpha={file_alpha} model, but alpha={alpha} was "
        "requested; drop --alpha or pick other weights.")
  labels = list(meta["labels"])
  classes = int(meta["classes"])
  try:
    labels = labels_lib.align(labels, classes)
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
      normalization=meta["normalization"],
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
                     what=f"bundled MNIST model ({h5})")


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
  sidecar = os.path.splitext(spec)[0] + ".json"
  if os.path.isfile(sidecar):
    return _checkpoint(sidecar, alpha, input_size, include_top)
  return _keras_h5(spec, alpha, input_size, include_top)


def resolve(spec, *, alpha=None, input_size=None, include_top=True,
            channels=None, classes=None, seed=0, cache_dir=None):
  """The weights `spec` names, ready for forward.apply / build.

  alpha / input_size: None = what the weights imply (ImageNet and random
  default to 1.0 / 224).  channels / classes / seed apply to "random" only;
  cache_dir overrides the Keras cache root for "imagenet" / "auto".
  Raises ModelSourceError with a one-line message.
  """
  alpha = _check_alpha(alpha)
  input_size = _check_size(input_size)
  if not isinstance(spec, str) or not spec:
    raise ModelSourceError(
        f"weights must be one of {SPECS} or a file path, got {spec!r}.")
  if spec == "imagenet":
    return _imagenet(alpha, input_size, include_top, cache_dir)
  if spec == "bundled":
    return _bundled(alpha, input_size, include_top)
  if spec == "random":
    return _random(alpha, input_size, include_top, channels, classes, seed)
  if spec == "auto":
    try:
      source = _imagenet(alpha, input_size, include_top, cache_dir,
                         quiet=True)
    except ModelSourceError as e:
      why = str(e).split(" (")[0] if "Keras cache" in str(e) else str(e)
      source = _bundled(alpha, input_size, include_top)
      logging.info("weights=auto: using the %s because ImageNet weights are "
                   "unavailable: %s", source.description, why)
    else:
      logging.info("weights=auto: using %s (found in the Keras cache or "
                   "downloaded).", source.description)
    return source
  return _path(spec, alpha, input_size, include_top)
