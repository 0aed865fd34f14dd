r"""Draws MobileNetV2 from the core architecture table as a PNG.

  tools/bazel run //tools:model_diagram -- --out data/docs/model.png

One box per layer group (stem, each inverted-residual block, head,
classifier) with output size, channels, stride and MACs at --input_size.
"""

import os

from mobilenet.tflite import cli

from absl import flags  # pylint: disable=g-bad-import-order
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet.core import arch  # pylint: disable=g-bad-import-order,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "PNG path to write.")
flags.DEFINE_float("alpha", 0.35, "Width multiplier.")
flags.DEFINE_integer("input_size", 32, "Input height = width.")
flags.DEFINE_integer("channels", 1, "Input channels.")
flags.DEFINE_integer("classes", 10, "Classes.")


def boxes(net, size):
  """(title, detail, residual) per drawn box, top to bottom."""
  costs = {c.name: c for c in arch.layer_costs(net, size, size)}
  out = [("input", f"{size}x{size}x{net.input_channels}", False)]
  s = costs[net.stem.name]
  out.append(("Conv1 3x3/2", f"{s.out_shape[0]}x{s.out_shape[1]}x"
              f"{s.out_shape[2]}  {s.macs:,} MACs", False))
  for b in net.blocks:
    o = costs[b.project.name].out_shape
    macs = sum(costs[c.name].macs for c in b.convs)
    t = f"t={b.expansion} " if b.expand else ""
    out.append((f"{b.prefix.rstrip('_')}  {t}s={b.stride}",
                f"{o[0]}x{o[1]}x{o[2]}  {macs:,} MACs", b.residual))
  h = costs[net.head.name]
  out.append(("Conv_1 1x1", f"{h.out_shape[0]}x{h.out_shape[1]}x"
              f"{h.out_shape[2]}  {h.macs:,} MACs", False))
  out.append(("global average pool", f"{h.out_shape[2]}", False))
  d = costs["predictions"]
  out.append(("predictions + softmax", f"{d.out_shape[2]} classes  "
              f"{d.params:,} params", False))
  return out


def draw(net, size, path):
  items = boxes(net, size)
  fig, ax = plt.subplots(figsize=(6, 0.42 * len(items) + 0.8), dpi=100)
  ax.set_xlim(0, 10)
  ax.set_ylim(-len(items), 1)
  ax.axis("off")
  for i, (title, detail, residual) in enumerate(items):
    y = -i
    color = "#cfe8cf" if residual else "#dde6f5"
    ax.add_patch(plt.Rectangle((1, y - 0.35), 8, 0.7, fc=color, ec="#445"))
    ax.text(1.2, y, title, va="center", fontsize=8, family="monospace")
    ax.text(8.8, y, detail, va="center", ha="right", fontsize=7,
            family="monospace")
    if i:
      ax.annotate("", (5, y + 0.35), (5, y + 0.65),
                  arrowprops={"arrowstyle": "->", "lw": 0.8})
  total = arch.count_macs(net, size, size)
  ax.set_title(f"MobileNetV2 alpha={net.alpha} {size}x{size}x"
               f"{net.input_channels}: {arch.count_params(net):,} params, "
               f"{total:,} MACs (green: residual)", fontsize=8)
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
  cli.writable_dir(os.path.dirname(os.path.abspath(path)), "--out")
  draw(net, FLAGS.input_size, path)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
