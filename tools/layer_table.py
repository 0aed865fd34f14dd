r"""Every Keras layer of a converted MobileNetV2 -> its TFLite tensor.

  tools/bazel run //tools:layer_table -- --save_to data/docs

Reads the model's JSON sidecar (alpha, size, channels, classes), walks
`Network.layers` of the core architecture table and matches each layer kind
to its TFLite op in execution order (`_KINDS`: convs, residual adds, pool,
classifier).  BN, ReLU6 and the stride-2 zero padding fold into a conv, so
they share its tensor.  Writes layer_table.csv and layer_table.md.
"""

import csv
import io
import os

from mobilenet.tflite import cli  # first: quiets LiteRT's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
import numpy as np

from mobilenet.core import arch  # pylint: disable=g-bad-import-order
from mobilenet.tflite import runtime

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A .tflite with its converter sidecar "
                    "(default: //mobilenet/tflite:mobilenet_v2_int8).")
flags.DEFINE_string("save_to", None, "Directory for layer_table.csv/.md.")

FIELDS = ("keras_layer", "kind", "tflite_op", "tensor_index", "tensor_name",
          "shape", "dtype", "params", "macs", "scale", "zero_point", "note")


def default_model():
  here = os.path.dirname(os.path.abspath(__file__))
  for d in (os.path.join(here, "..", "mobilenet", "tflite"),
            os.path.join(here, "..", "bazel-bin", "mobilenet", "tflite")):
    path = os.path.normpath(os.path.join(d, "mobilenet_v2_int8.tflite"))
    if os.path.isfile(path):
      return path
  raise cli.UsageError("build //mobilenet/tflite:mobilenet_v2_int8 or pass "
                       "--model")


# arch.Layer.kind -> (the TFLite op computing it, note).  No op: the layer
# shares the tensor of the conv it was folded into, the one before it ("bn",
# "relu6") or, for "pad", the one after it.
_KINDS = {
    "pad": (None, "absorbed: {conv} uses SAME padding"),
    "conv": ("CONV_2D", ""),
    "depthwise": ("DEPTHWISE_CONV_2D", ""),
    "bn": (None, "folded into {conv}"),
    "relu6": (None, "fused into {conv}"),
    "add": ("ADD", "residual"),
    "pool": ("MEAN", ""),
    "dense": ("FULLY_CONNECTED", ""),
    "softmax": ("SOFTMAX", "classifier activation"),
}


def rows_for(model, meta):
  interp = model.interpreter
  tensors = {t["index"]: t for t in interp.get_tensor_details()}
  queues = {}
  for op in interp._get_ops_details():  # pylint: disable=protected-access
    queues.setdefault(op["op_name"], []).append(op)
  net = arch.derive(meta["alpha"], meta["channels"], meta["classes"],
                    classifier_activation="softmax" if queues.get("SOFTMAX")
                    else None)
  h, w = meta["input_size"]

  def row(layer, kind, op_name, tensor_index, params=0, macs=0, note=""):
    t = tensors[tensor_index]
    scale, zp = t["quantization"]
    return {"keras_layer": layer, "kind": kind, "tflite_op": op_name,
            "tensor_index": int(tensor_index), "tensor_name": t["name"],
            "shape": "x".join(str(int(v)) for v in t["shape"]),
            "dtype": np.dtype(t["dtype"]).name, "params": params,
            "macs": macs, "scale": f"{scale:.9g}", "zero_point": int(zp),
            "note": note}

  out = [row("input_1", "input", "-", model.input["index"],
             note="model input")]
  pads = []  # pad layers waiting for the conv that absorbs them
  for layer, cost in zip(net.layers, arch.layer_costs(net, h, w)):
    op_name, note = _KINDS[layer.kind]
    if layer.kind == "pad":
      pads.append(layer)
      continue
    if op_name:
      if not queues.get(op_name):
        raise ValueError(f"{layer.name}: no {op_name} op left in the model; "
                         f"is it a MobileNetV2 alpha={meta['alpha']} from our "
                         "converter?")
      source, op = layer, queues[op_name].pop(0)
      index = int(op["outputs"][0])
      if tuple(tensors[index]["shape"][1:]) != cost.out_shape:
        raise ValueError(f"{layer.name}: TFLite tensor shape "
                         f"{tuple(tensors[index]['shape'])} != "
                         f"{cost.out_shape}")
      for pad in pads:
        out.append(row(pad.name, pad.kind, "-", index,
                       note=_KINDS["pad"][1].format(conv=layer.name)))
      pads = []
    out.append(row(layer.name, layer.kind, op["op_name"], index, cost.params,
                   cost.macs, note.format(conv=source.name)))
  return out


def to_csv(rows):
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
  w.writeheader()
  w.writerows(rows)
  return buf.getvalue()


def to_markdown(rows, meta, model_name):
  total_p = sum(r["params"] for r in rows)
  total_m = sum(r["macs"] for r in rows)
  lines = [f"# Layer -> tensor table: {model_name}", "",
           f"alpha={meta['alpha']}, input {meta['input_size'][0]}x"
           f"{meta['input_size'][1]}x{meta['channels']}, {meta['classes']} "
           f"classes, {meta['quantization']}; weights: "
           f"{meta['weights']['description']}.  {total_p:,} parameters "
           f"(Keras count, BN included), {total_m:,} MACs.", "",
           "Generated by `tools/bazel run //tools:layer_table`; do not edit.",
           "", "| " + " | ".join(FIELDS) + " |",
           "|" + " --- |" * len(FIELDS)]
  for r in rows:
    lines.append("| " + " | ".join(
        f"`{r[f]}`" if f == "tensor_name" else str(r[f]) for f in FIELDS)
                 + " |")
  return "\n".join(lines) + "\n"


def generate(model_path):
  """(csv text, markdown text) for the model at `model_path`."""
  meta = runtime.read_sidecar(model_path)
  if meta is None:
    raise cli.UsageError(f"{model_path}: no converter sidecar (.json) beside "
                         "it; convert with //mobilenet/tflite:convert")
  model = runtime.Model(model_path, use_default_delegates=False)
  rows = rows_for(model, meta)
  name = os.path.splitext(os.path.basename(model_path))[0]
  return to_csv(rows), to_markdown(rows, meta, name)


def main(argv):
  del argv
  if not FLAGS.save_to:
    raise cli.UsageError("--save_to is required")
  model = cli.user_path(FLAGS.model) if FLAGS.model else default_model()
  save_to = cli.output_dir(cli.user_path(FLAGS.save_to))
  csv_text, md = generate(model)
  os.makedirs(save_to, exist_ok=True)
  for name, text in (("layer_table.csv", csv_text), ("layer_table.md", md)):
    path = os.path.join(save_to, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
