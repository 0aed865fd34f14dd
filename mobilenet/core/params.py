"""MobileNetV2 parameters as a plain structure keyed by Keras layer name.

    params = {"Conv1": {"kernel": array}, "bn_Conv1": {"gamma": ..., "beta": ...,
              "moving_mean": ..., "moving_variance": ...}, ...,
              "predictions": {"kernel": ..., "bias": ...}}

Values are numpy arrays (or tensors/variables after conversion).  Weight files
use the legacy Keras HDF5 layout of the official ImageNet files: root attribute
`layer_names`, per-layer group attribute `weight_names`, datasets such as
`Conv1/kernel:0` nested under the layer group.
"""

import os
import tempfile

import h5py
import numpy as np

from mobilenet.core import arch

# Order in which Keras' legacy format lists each layer's weights
# (trainable first, then non-trainable).
_WEIGHT_ORDER = ("kernel", "depthwise_kernel", "bias", "gamma", "beta",
                 "moving_mean", "moving_variance")
_BN_STATS = ("moving_mean", "moving_variance")
# Loaders only compare this against "1" (Keras 1 layout); ours is Keras 2's.
_FILE_KERAS_VERSION = b"2.0"
# Widths tried when a file's alpha is not given: every Keras one, then a grid.
_CANDIDATE_ALPHAS = tuple(arch.KERAS_ALPHAS) + tuple(
    round(0.05 * i, 2) for i in range(1, 61))


def _ordered(weights):
  return sorted(weights, key=_WEIGHT_ORDER.index)


# ---- initialization ---------------------------------------------------------


def _glorot_uniform(rng, shape):
  # Keras compute_fans: receptive field = prod(shape[:-2]).
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def init(net: arch.Network, seed=0):
  """Fresh parameters with Keras' default initializers: glorot_uniform for
  conv / depthwise / dense kernels, zeros for biases and beta and moving mean,
  ones for gamma and moving variance."""
  rng = np.random.default_rng(seed)
  params = {}
  for layer, shapes in net.weight_shapes().items():
    p = {}
    for name, shape in shapes.items():
      if name in ("kernel", "depthwise_kernel"):
        p[name] = _glorot_uniform(rng, shape)
      elif name in ("gamma", "moving_variance"):
        p[name] = np.ones(shape, np.float32)
      else:
        p[name] = np.zeros(shape, np.float32)
    params[layer] = p
  return params


# ---- checking ---------------------------------------------------------------


def check(params, net: arch.Network, source="params"):
  """Raises ValueError naming the layer (and both shapes) on any mismatch."""
  for layer, shapes in net.weight_shapes().items():
    if layer not in params:
      raise ValueError(
          f"{source}: layer '{layer}' is missing (MobileNetV2 alpha="
          f"{net.alpha} needs it with weights "
          f"{ {k: tuple(v) for k, v in shapes.items()} }).")
    for name, shape in shapes.items():
      if name not in params[layer]:
        raise ValueError(
            f"{source}: layer '{layer}' has no '{name}' weight "
            f"(expected shape {tuple(shape)}).")
      got = tuple(params[layer][name].shape)
      if got != tuple(shape):
        raise ValueError(
            f"{source}: layer '{layer}' weight '{name}' has shape {got}, but "
            f"MobileNetV2 alpha={net.alpha} expects {tuple(shape)} (weights "
            "for a different alpha, channel count or class count?).")


def select(params, net):
  """Only the layers `net` uses (e.g. drop `predictions` for no-top)."""
  return {layer: {k: params[layer][k] for k in shapes}
          for layer, shapes in net.weight_shapes().items()}


def to_numpy(params):
  return {layer: {k: np.asarray(v) for k, v in p.items()}
          for layer, p in params.items()}


# ---- Keras model import -----------------------------------------------------


def from_keras_model(model, net: arch.Network):
  """Copies weights out of a keras.applications.MobileNetV2 by layer name."""
  params = {}
  for layer, shapes in net.weight_shapes().items():
    try:
      klayer = model.get_layer(layer)
    except ValueError:
      raise ValueError(f"Keras model: layer '{layer}' is missing.") from None
    values = {}
    for w in klayer.weights:
      key = w.path.split("/")[-1].split(":")[0]
      if key == "kernel" and "depthwise_kernel" in shapes:
        key = "depthwise_kernel"  # Keras 3 renamed it
      values[key] = np.asarray(w.numpy())
    params[layer] = values
  check(params, net, source="Keras model")
  return select(params, net)


# ---- legacy Keras HDF5 weight files ----------------------------------------


def _read_str_attr(obj, name):
  """A list-of-strings attribute, following Keras' chunking for big lists."""
  if name in obj.attrs:
    raw = list(obj.attrs[name])
  else:
    raw, i = [], 0
    while f"{name}{i}" in obj.attrs:
      raw.extend(obj.attrs[f"{name}{i}"])
      i += 1
  return [n.decode("utf8") if hasattr(n, "decode") else str(n) for n in raw]


def read_h5(path):
  """{layer: {weight: array}} of a legacy Keras weight file, as stored.

  Keras 3 names a depthwise kernel "kernel"; callers that know the network
  map it back (see load_h5).
  """
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"cannot read weight file {path}: not a readable HDF5 "
                     f"file ({e}).") from None
  with f:
    root = f
    if "layer_names" not in f.attrs and "model_weights" in f:
      root = f["model_weights"]  # a full-model save
    weights = {}
    for layer in _read_str_attr(root, "layer_names"):
      if layer not in root:
        continue
      group = root[layer]
      weights[layer] = {
          wname.split("/")[-1].split(":")[0]: np.asarray(group[wname][()])
          for wname in _read_str_attr(group, "weight_names")}
  return weights


def _net_keys(stored, shapes):
  return {("depthwise_kernel" if k == "kernel" and "depthwise_kernel" in shapes
           else k): v for k, v in stored.items()}


def h5_layout(path, alpha=None):
  """(alpha, channels, classes-or-None) of a Keras MobileNetV2 weight file,
  read from its weight shapes: exact, never from the file name.

  alpha=None tries every Keras width, then a 0.05 grid; a given alpha must
  fit.  Raises ValueError naming the file.
  """
  stored = read_h5(path)
  conv1 = stored.get("Conv1", {}).get("kernel")
  if conv1 is None or conv1.ndim != 4:
    raise ValueError(f"{path}: no 'Conv1/kernel' weight; not a Keras "
                     "MobileNetV2 weight file.")
  channels = int(conv1.shape[2])
  pred = stored.get("predictions", {}).get("kernel")
  classes = int(pred.shape[-1]) if pred is not None else None
  candidates = (alpha,) if alpha is not None else _CANDIDATE_ALPHAS
  for a in candidates:
    net = arch.derive(a, channels, classes or 1, classes is not None)
    if all(layer in stored and {
        k: tuple(v.shape)
        for k, v in _net_keys(stored[layer], shapes).items()} == {
            k: tuple(s) for k, s in shapes.items()}
           for layer, shapes in net.weight_shapes().items()):
      return a, channels, classes
  if alpha is not None:
    raise ValueError(f"{path}: the weight shapes do not fit MobileNetV2 "
                     f"alpha={alpha}; leave --alpha out to infer it from the "
                     "file.")
  raise ValueError(f"{path}: the weight shapes fit no MobileNetV2 width; not "
                   "a Keras MobileNetV2 weight file?")


def load_h5(path, net: arch.Network):
  """Reads a legacy Keras weight file (e.g. the official ImageNet one)."""
  stored = read_h5(path)
  params = {}
  for layer, shapes in net.weight_shapes().items():
    if layer in stored:  # a missing layer is named by check() below
      params[layer] = _net_keys(stored[layer], shapes)
  check(params, net, source=f"weight file {path}")
  return select(params, net)


def save_h5(params, path, net: arch.Network):
  """Writes `params` as a legacy Keras weight file that
  `keras.Model.load_weights(path)` accepts for the matching MobileNetV2.

  Written to a temp file and renamed so a failure leaves no partial file.
  """
  check(params, net)
  params = to_numpy(select(params, net))
  layers = list(net.weight_shapes())
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=directory)
  os.close(fd)
  try:
    with h5py.File(tmp, "w") as f:
      f.attrs["layer_names"] = np.array([n.encode("utf8") for n in layers])
      f.attrs["backend"] = b"tensorflow"
      f.attrs["keras_version"] = _FILE_KERAS_VERSION
      for layer in sorted(layers):  # Keras sorts groups by name too
        group = f.create_group(layer)
        wnames = [f"{layer}/{k}:0" for k in _ordered(params[layer])]
        group.attrs["weight_names"] = np.array(
            [n.encode("utf8") for n in wnames])
        for wname, k in zip(wnames, _ordered(params[layer])):
          group.create_dataset(wname, data=params[layer][k].astype(np.float32))
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


# ---- BN folding and statistics ---------------------------------------------


def fold_batch_norm(params, net: arch.Network, epsilon=arch.BN_EPSILON):
  """Folds every inference BN into its conv: returns {conv name: {"kernel" or
  "depthwise_kernel": ..., "bias": ...}} plus "predictions" unchanged."""
  params = to_numpy(params)
  folded = {}
  for c in net.convs:
    bn = params[c.bn_name]
    scale = (bn["gamma"].astype(np.float64) /
             np.sqrt(bn["moving_variance"].astype(np.float64) + epsilon))
    bias = bn["beta"] - bn["moving_mean"] * scale
    if c.kind == "depthwise":
      k = params[c.name]["depthwise_kernel"] * scale[None, None, :, None]
      folded[c.name] = {"depthwise_kernel": k.astype(np.float32)}
    else:
      k = params[c.name]["kernel"] * scale
      folded[c.name] = {"kernel": k.astype(np.float32)}
    folded[c.name]["bias"] = bias.astype(np.float32)
  if net.classifier:
    folded[net.classifier.name] = dict(params[net.classifier.name])
  return folded


def bn_stats(params, net: arch.Network):
  """{bn layer name: {"moving_mean", "moving_variance"}}."""
  return {n: {k: params[n][k] for k in _BN_STATS} for n in net.bn_names}


def with_bn_stats(params, stats):
  """A copy of `params` with the moving statistics replaced by `stats` (as
  returned by a training-mode forward pass)."""
  out = {layer: dict(p) for layer, p in params.items()}
  for layer, s in stats.items():
    out[layer].update(s)
  return out
