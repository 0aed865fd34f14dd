"""Cross-layer equalization for per-tensor int8 weights.

A trained MobileNetV2 often has depthwise channels whose input (the ReLU6
output of the conv before) is small: BN folding then gives them weights
orders of magnitude above their neighbours, and one int8 scale per tensor
(the max) rounds the other channels to a few steps or zero.  Equalization
(Nagel et al. 2019, "Data-Free Quantization", section 4.1) moves a factor
s_c > 1 from depthwise channel c into the conv before it:

    gamma, beta of that conv's BN  *= s_c     (its ReLU6 input times s_c)
    depthwise kernel channel c     /= s_c

ReLU6 commutes with the scaling only where the scaled input stays below 6,
so s_c is bounded by the channel's largest activation on calibration
images: the float network is unchanged on them (up to float32 rounding).
Each s_c is also bounded so that neither the activation tensor's range nor
the preceding conv's largest folded weight grows: its int8 scales stay
as they were and only the depthwise scale shrinks.  A channel that stays 0
on every calibration image (a "dead" ReLU6: its depthwise output is
constant, its BN variance near 0, so its folded weights are often the
largest of the layer) has only that second bound; it changes nothing
where the channel stays below 6/s_c, 0 included.
"""

import numpy as np

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import params as params_lib

BATCH = 64


def pairs(net):
  """(conv before, depthwise) unit pairs of arch.Network `net` whose
  depthwise input is only that conv's ReLU6 output."""
  convs = net.convs
  return [(a, b) for a, b in zip(convs, convs[1:])
          if b.kind == "depthwise" and a.relu_name]


def activation_maxima(params, images, alpha, net):
  """{ReLU6 layer name: per-channel max over `images`} for the ReLU6s
  that feed a depthwise conv (`pairs`), from the float forward."""
  names = {a.relu_name for a, _ in pairs(net)}
  maxima = {}

  def observe(layer, x):
    if layer.name in names:
      m = np.max(np.asarray(x), axis=(0, 1, 2))
      maxima[layer.name] = np.maximum(maxima.get(layer.name, m), m)

  for i in range(0, len(images), BATCH):
    forward.apply(params, images[i:i + BATCH], alpha=alpha, observe=observe)
  return maxima


def _spread(r):
  r = r[r > 0]
  return float(r.max() / np.median(r)) if r.size else 1.0


def equalize(params, net, maxima):
  """Equalized copy of `params` (numpy) and a report: one dict per
  depthwise conv with its folded weights' spread (max/median over
  channels) before and after, how many channels were scaled and by how
  much at most."""
  params = {k: dict(v) for k, v in params_lib.to_numpy(params).items()}
  # No two pairs share a layer, so folding once up front gives each pair
  # its own layers as they were.
  folded = params_lib.fold_batch_norm(params, net)
  report = []
  for conv, dw in pairs(net):
    bn_c = params[conv.bn_name]
    kernel = params[dw.name]["depthwise_kernel"]
    # max|BN-folded kernel| per output channel
    r = np.abs(folded[dw.name]["depthwise_kernel"]).max(axis=(0, 1, 3))
    q = np.abs(folded[conv.name]["kernel"]).max(axis=(0, 1, 2))
    a = maxima[conv.relu_name]
    with np.errstate(divide="ignore", invalid="ignore"):
      cap = np.minimum(np.where(a > 0, a.max() / a, np.inf), q.max() / q)
    cap = np.maximum(np.nan_to_num(cap, posinf=1.0), 1.0)
    target = np.max(r / cap)  # the smallest max the caps allow
    s = np.clip(r / target, 1.0, cap) if target > 0 else np.ones_like(r)
    s = s.astype(np.float32)
    bn_c["gamma"] = bn_c["gamma"] * s
    bn_c["beta"] = bn_c["beta"] * s
    params[dw.name]["depthwise_kernel"] = kernel / s[None, None, :, None]
    report.append({"layer": dw.name, "spread_before": _spread(r),
                   "spread_after": _spread(r / s),
                   "channels_scaled": int(np.sum(s > 1)),
                   "max_factor": float(s.max())})
  return params, report


def equalize_source_params(source, images):
  """`equalize` for a model_source.ModelSource and a normalised image
  batch: (params, report)."""
  net = arch.derive(source.alpha, source.channels, source.classes,
                    source.include_top)
  maxima = activation_maxima(source.params, images, source.alpha, net)
  return equalize(source.params, net, maxima)


def summary(report, images):
  """The sidecars' "equalization" entry."""
  return {"method": "cross-layer equalization into the conv before each "
                    "depthwise, bounded by ReLU6 (float output unchanged on "
                    "the calibration images)",
          "calibration_images": int(images),
          "layers": [{k: (round(v, 3) if isinstance(v, float) else v)
                      for k, v in row.items()} for row in report]}


def table(report):
  """Markdown table of a report."""
  lines = ["| depthwise | spread before | after | channels scaled | "
           "max factor |", "|---|---|---|---|---|"]
  for row in report:
    lines.append(f"| {row['layer']} | {row['spread_before']:.1f}x | "
                 f"{row['spread_after']:.1f}x | {row['channels_scaled']} | "
                 f"{row['max_factor']:.1f} |")
  return "\n".join(lines)
