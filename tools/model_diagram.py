r"""Draws MobileNetV2 from the core architecture table as a PNG.

  tools/bazel run //tools:model_diagram -- --out data/docs/model.png

Walks `Network.layers`: one box per unit (stem, each inverted residual
block, head, pool, classifier) with output shape and MACs at --input_size,
and beside it every layer of one residual block (--detail), drawn per layer
kind (`_KINDS`).
"""

import itertools
import os
import textwrap

from mobilenet.core import cli

from absl import flags  # pylint: disable=g-bad-import-order
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet.core import arch  # pylint: disable=g-bad-import-order,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "PNG path to write.")
flags.DEFINE_float("alpha", 1.0, "Width multiplier.")
flags.DEFINE_integer("input_size", 224, "Input height = width.")
flags.DEFINE_integer("channels", 3, "Input channels.")
flags.DEFINE_integer("classes", 1000, "Classes.")
flags.DEFINE_string("detail", None, "Block drawn layer by layer (default: "
                    "the first residual block with an expansion conv).")

# arch.Layer.kind -> (short label, fill colour) in the drawing.
_KINDS = {
    "pad": (lambda l: "zero pad (correct_pad)", "#eeeeee"),
    "conv": (lambda l: f"conv {_kernel(l)}", "#c6dbef"),
    "depthwise": (lambda l: f"depthwise {_kernel(l)}", "#d9cdf0"),
    "bn": (lambda l: "BN", "#fdf1c7"),
    "relu6": (lambda l: "ReLU6", "#f3e0d4"),
    "add": (lambda l: "add shortcut", "#cfe8cf"),
    "pool": (lambda l: f"global {l.mode} pool", "#dde6f5"),
    "dense": (lambda l: f"dense {l.out_channels}", "#c6dbef"),
    "softmax": (lambda l: "softmax", "#f3e0d4"),
}
_UNIT = "#dde6f5"
_RESIDUAL = "#cfe8cf"


def _shape(shape):
  return "x".join(str(v) for v in shape)


def _count(n):
  """3,538,984 -> "3.5 M"; small counts stay exact."""
  if n >= 1e6:
    return f"{n / 1e6:.1f} M"
  if n >= 1e4:
    return f"{n / 1e3:.1f} k"
  return f"{n:,}"


def _kernel(layer):
  k = f"{layer.kernel}x{layer.kernel}"
  return k + (f"/{layer.stride}" if layer.stride > 1 else "")


def units(net, size):
  """[(scope, [(Layer, LayerCost), ...])]: `net.layers` grouped by unit."""
  pairs = zip(net.layers, arch.layer_costs(net, size, size))
  return [(scope, list(group)) for scope, group in
          itertools.groupby(pairs, key=lambda pair: pair[0].scope)]


def _title(scope, group):
  kinds = [layer.kind for layer, _ in group]
  if "depthwise" in kinds:  # an inverted residual block
    first, dw = group[0][0], next(l for l, _ in group if l.kind == "depthwise")
    return f"{scope}  t={dw.in_channels // first.in_channels} s={dw.stride}"
  return f"{scope}  " + " + ".join(dict.fromkeys(
      _KINDS[l.kind][0](l) for l, _ in group))


def boxes(net, size):
  """(title, detail, residual) per drawn unit box, top to bottom."""
  out = [("input", f"{size}x{size}x{net.input_channels}", False)]
  for scope, group in units(net, size):
    cost = group[-1][1]
    macs = sum(c.macs for _, c in group)
    detail = f"{_shape(cost.out_shape)}  {_count(macs)} MACs" if macs else (
        _shape(cost.out_shape))
    out.append((_title(scope, group), detail,
                any(l.kind == "add" for l, _ in group)))
  return out


def _detail_scope(net):
  for b in net.blocks:
    if b.residual and b.expand:
      return b.scope
  return net.blocks[0].scope


def _box(ax, x, y, width, color, left, right, size):
  ax.add_patch(plt.Rectangle((x, y - 0.36), width, 0.72, fc=color, ec="#445"))
  ax.text(x + 0.15, y, left, va="center", fontsize=size, family="monospace")
  ax.text(x + width - 0.15, y, right, va="center", ha="right",
          fontsize=size, family="monospace")


def _arrow(ax, x, y_from, y_to):
  ax.annotate("", (x, y_to), (x, y_from),
              arrowprops={"arrowstyle": "->", "lw": 0.8})


def _notes(all_units):
  """Where the other blocks differ from a residual block with expansion, and
  where the parameters and MACs are."""
  blocks = [(scope, [l.kind for l, _ in group]) for scope, group in all_units
            if any(l.kind == "depthwise" for l, _ in group)]
  lines = ["The other blocks:"]
  for what, test in (
      ("no expand conv (t=1)", lambda kinds: kinds[0] != "conv"),
      ("stride 2, zero pad before the depthwise conv",
       lambda kinds: "pad" in kinds),
      ("no add (input and output shapes differ)",
       lambda kinds: "add" not in kinds)):
    names = ", ".join(scope for scope, kinds in blocks if test(kinds))
    lines.extend(textwrap.wrap(f"- {what}: {names}", 80,
                               subsequent_indent="    "))
  costs = [cost for _, group in all_units for _, cost in group]
  for field, what in (("params", "Parameters"), ("macs", "MACs")):
    shares = {}
    for c in costs:
      shares[c.kind] = shares.get(c.kind, 0) + getattr(c, field)
    total = sum(shares.values())
    lines.append(f"{what} by layer kind: " + ", ".join(
        f"{kind} {n / total:.1%}" for kind, n in shares.items() if n))
  return "\n".join(lines)


def _draw_block(ax, top, detail, layers):
  """`layers` of the detailed block, one box each, from row `top` down."""
  x, width = 11.0, 10.2
  ax.text(x, top + 0.5, f"{detail}, one box per Keras layer: kind, name, "
          "output shape, MACs", fontsize=8.5, va="bottom")
  _box(ax, x, top, width, "#ffffff", f"input of {detail}",
       _shape(layers[0][1].in_shape), 8.5)
  for j, (layer, cost) in enumerate(layers, 1):
    label, color = _KINDS[layer.kind]
    macs = f"  {_count(cost.macs)} MACs" if cost.macs else ""
    _box(ax, x, top - j, width, color, f"{label(layer):<16}{layer.name}",
         _shape(cost.out_shape) + macs, 8.5)
    _arrow(ax, x + width / 2, top - j + 0.64, top - j + 0.36)
    if layer.shortcut:  # from the block input, around the right
      right = x + width + 0.35
      ax.plot([x + width, right, right], [top, top, top - j],
              color="#2a7d2a", lw=1.0)
      ax.annotate("", (x + width, top - j), (right, top - j),
                  arrowprops={"arrowstyle": "->", "lw": 1.0,
                              "color": "#2a7d2a"})


def draw(net, size, path, detail=None):
  """Writes the diagram of `net` at `size` x `size` input to `path`."""
  items = boxes(net, size)
  all_units = units(net, size)
  scopes = [scope for scope, _ in all_units]
  detail = detail or _detail_scope(net)
  if detail not in scopes:
    raise ValueError(f"no unit {detail!r}; units: {scopes}")
  layers = dict(all_units)[detail]
  rows, n = len(items), len(layers)
  fig, ax = plt.subplots(figsize=(10.5, 0.45 * rows + 1.6), dpi=110)
  ax.set_xlim(0, 21.8)
  ax.set_ylim(-rows + 0.4, 1.1)
  ax.axis("off")
  for i, (title, text, residual) in enumerate(items):
    _box(ax, 0.1, -i, 9.5, _RESIDUAL if residual else _UNIT, title, text,
         8.5)
    if i:
      _arrow(ax, 4.85, -i + 0.64, -i + 0.36)
  # The detailed block beside its unit box (row 0 is the input).
  at = scopes.index(detail) + 1
  top = min(max(-at + (n + 1) / 2, -rows + n + 2), 0)
  ax.plot([9.6, 10.6, 10.6, 9.6], [-at + 0.36, top + 0.36, top - n - 0.36,
                                   -at - 0.36], color="#889", lw=0.8, ls="--")
  _draw_block(ax, top, detail, layers)
  ax.text(11.0, top - n - 0.8, _notes(all_units), va="top", fontsize=8.5,
          linespacing=1.6)
  params, macs = arch.count_params(net), arch.count_macs(net, size, size)
  ax.set_title(
      f"MobileNetV2  alpha={net.alpha}, input {size}x{size}x"
      f"{net.input_channels}: {_count(params)} parameters, {_count(macs)} "
      f"MACs\n({params:,} parameters, {macs:,} multiply-adds; green: "
      "residual blocks)", fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  # No Software/date metadata: the same table gives the same bytes.
  fig.savefig(tmp, format="png", metadata={"Software": None})
  plt.close(fig)
  os.replace(tmp, path)


def main(argv):
  del argv
  if not FLAGS.out:
    raise cli.UsageError("--out is required")
  net = arch.derive(FLAGS.alpha, FLAGS.channels, FLAGS.classes)
  arch.validate_input_size(FLAGS.input_size, FLAGS.input_size)
  path = cli.user_path(FLAGS.out)
  cli.output_dir(os.path.dirname(os.path.abspath(path)), "--out")
  draw(net, FLAGS.input_size, path, FLAGS.detail)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
