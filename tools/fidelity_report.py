r"""Float vs quantized MobileNetV2 on an image folder, plus per-layer errors.

  tools/bazel run //tools:fidelity_report -- --save_to report/

Converts the model (--weights, default bundled) twice with logits output
(float and --quantize), runs both with LiteRT on every image of --images_dir
(labels = sub-folder names, e.g. data/mnist_heldout/<digit>/), and writes
fidelity.csv (per-layer table of tf.lite.experimental.QuantizationDebugger)
and fidelity.md (accuracies, top-1 agreement, logit errors, worst layers).
For full-integer variants (int8, uint8) the quantized model also runs in
the integer-exact forward (mobilenet/tflite/exact_forward.py), a third column
beside float and LiteRT.  For --quantize=int8 it also runs the deployed int8
model (softmax output, the bytes //mobilenet/tflite:mobilenet_v2_micro
builds) in TensorFlow Lite Micro and compares it with LiteRT's reference
kernels, the integer-exact forward (both bit for bit) and LiteRT's default
XNNPACK path.
"""

import csv
import hashlib
import io
import os

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging
import numpy as np

from mobilenet.core import labels as labels_lib  # pylint: disable=g-bad-import-order
from mobilenet.core import preprocess
from mobilenet.tflite import converter
from mobilenet.tflite import exact_forward
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import model_sidecar
from mobilenet.tflite import runtime

FLAGS = flags.FLAGS
flags.DEFINE_string("save_to", None, "Directory for fidelity.csv/.md.")
cli.define_model_flags(weights="bundled")
flags.DEFINE_enum("quantize", "int8", ["int8", "uint8", "dynamic", "float16"],
                  "Quantized variant to compare with float.")
flags.DEFINE_string("images_dir", None, "Evaluation images (default "
                    "data/mnist_heldout); sub-folder names are the labels.")
flags.DEFINE_string("calibration_dir", None, "Default data/calibration.")
flags.DEFINE_integer("num_calibration", converter.DEFAULT_NUM_CALIBRATION, "")
flags.DEFINE_integer("debug_images", 50, "Images for the per-layer debugger.",
                     lower_bound=1)
flags.DEFINE_integer("worst", 5, "Worst layers named in the summary.")
flags.mark_flag_as_required("save_to")


def folder_labels(paths, root):
  """Sub-folder name per image, or None when images sit directly in root."""
  names = [os.path.relpath(os.path.dirname(p), root) for p in paths]
  return None if any(n == "." for n in names) else names


def _versus_float(f, q, truth, names):
  err = np.abs(f - q)
  return {"top1_agreement": float(np.mean(f.argmax(1) == q.argmax(1))),
          "max_logit_error": float(err.max()),
          "mean_logit_error": float(err.mean()),
          "accuracy": (None if truth is None else
                       float(np.mean(names[q.argmax(1)] == truth)))}


def evaluate(float_model, quant_model, pixels, normalization, truth, names,
             exact_model=None, reference=None):
  """Float vs LiteRT's quantized model (and the integer-exact forward of the
  same quantized model, when it is full-integer, compared with LiteRT and
  with `reference`, the model in LiteRT's reference kernels)."""
  names = np.asarray(names)
  truth = None if truth is None else np.asarray(truth)
  f = float_model.predict_pixels(pixels, normalization)
  out = {"images": len(pixels),
         "float_accuracy": (None if truth is None else
                            float(np.mean(names[f.argmax(1)] == truth))),
         "litert": _versus_float(
             f, quant_model.predict_pixels(pixels, normalization), truth,
             names),
         "exact": None}
  if exact_model is not None:
    x = quant_model.quantize_pixels(pixels, normalization)
    raw = exact_model.run_raw(x)
    e = raw.astype(np.int64)
    out["exact"] = _versus_float(
        f, runtime.dequantize(raw, *exact_model.output_quant), truth, names)
    for key, model in (("litert", quant_model), ("reference", reference)):
      q = model.run_raw(x).astype(np.int64)
      out["exact"][key] = (int(np.sum(np.all(e == q, axis=1))),
                           int(np.abs(e - q).max()))
  return out


def compare_runtimes(tflite, pixels, normalization, truth, names):
  """Raw int8 outputs of TFLite Micro against LiteRT's reference kernels
  and its default path (XNNPACK), on the same quantized inputs."""
  micro = micro_runtime.MicroModel(tflite)
  x = micro.quantize_pixels(pixels, normalization)
  ours = micro.run_raw(x).astype(np.int64)
  out = {"images": len(x), "micro_accuracy": None,
         "sha256": hashlib.sha256(tflite).hexdigest()}
  for key, model in (("reference", runtime.Model(tflite,
                                                 reference_kernels=True)),
                     ("exact", exact_forward.ExactModel(tflite)),
                     ("xnnpack", runtime.Model(tflite))):
    theirs = model.run_raw(x).astype(np.int64)
    out[key] = {"identical": int(np.sum(np.all(ours == theirs, axis=1))),
                "top1_agreement": int(np.sum(ours.argmax(1) ==
                                             theirs.argmax(1))),
                "max_step_difference": int(np.abs(ours - theirs).max())}
  if truth is not None:
    out["micro_accuracy"] = float(np.mean(
        np.asarray(names)[ours.argmax(1)] == np.asarray(truth)))
  return out


def micro_markdown(c):
  n = c["images"]
  lines = ["## TensorFlow Lite Micro (the deployed int8 model, softmax "
           "output)", "",
           f"Model sha256 {c['sha256'][:16]}… (the `tflite_sha256` of "
           "`mobilenet_v2_micro.json` when the settings match). Raw int8 "
           "outputs on the same quantized inputs; a step is one unit of the "
           "output's quantization scale.", "",
           "| TFLM vs | identical outputs | top-1 agreement | largest "
           "difference |", "| --- | --- | --- | --- |"]
  for key, label in (("reference", "LiteRT reference kernels (BUILTIN_REF)"),
                     ("exact", "integer-exact forward (TensorFlow ops)"),
                     ("xnnpack", "LiteRT default (XNNPACK)")):
    r = c[key]
    lines.append(f"| {label} | {r['identical']:,}/{n:,} | "
                 f"{r['top1_agreement']:,}/{n:,} | "
                 f"{r['max_step_difference']} steps |")
  lines += ["", f"TFLM accuracy: {_pct(c['micro_accuracy'])}.", ""]
  return "\n".join(lines)


def layer_table(tf_model, quantize, rep, debug_x):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  conv = converter.make_converter(tf_model.get_concrete_function(), quantize,
                                  rep, tf_model)
  debugger = tf.lite.experimental.QuantizationDebugger(
      converter=conv, debug_dataset=lambda: ([x[None]] for x in debug_x))
  debugger.run()
  buf = io.StringIO()
  debugger.layer_statistics_dump(buf)
  rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
  for r in rows:
    scale = float(r["scale"]) if r.get("scale") else 0.0
    mse = float(r["mean_squared_error"])
    # RMSE in units of the layer's quantization step: > ~0.3 means the
    # error is more than rounding alone explains.
    r["rmse_over_scale"] = f"{np.sqrt(mse) / scale:.6g}" if scale else ""
  return rows


def _pct(v):
  return "n/a" if v is None else f"{100 * v:.2f} %"


def summary_table(summary, quantize):
  """Float, LiteRT and the integer-exact forward side by side (logits)."""
  lit, ex = summary["litert"], summary["exact"]
  cols = [lit] + ([ex] if ex else [])
  head = f"| metric | float | {quantize} (LiteRT) |"
  if ex:
    head += f" {quantize} (integer-exact forward) |"
  lines = [head, "|" + " --- |" * (2 + len(cols))]

  def row(label, first, fmt):
    lines.append(f"| {label} | {first} | " +
                 " | ".join(fmt(c) for c in cols) + " |")

  row("accuracy", _pct(summary["float_accuracy"]), lambda c: _pct(
      c["accuracy"]))
  row("top-1 agreement with float", "—",
      lambda c: _pct(c["top1_agreement"]))
  row("max logit error vs float", "—", lambda c: f"{c['max_logit_error']:.4f}")
  row("mean logit error vs float", "—",
      lambda c: f"{c['mean_logit_error']:.4f}")
  if ex:
    n = summary["images"]
    for key, label in (("litert", "LiteRT (as run here)"),
                       ("reference", "LiteRT BUILTIN_REF")):
      same, steps = ex[key]
      lines.append(f"| raw outputs identical to {label} | — | — | "
                   f"{same:,}/{n:,} (largest difference {steps} steps) |")
  return lines


def markdown(summary, rows, meta, worst):
  lines = [f"# Quantization fidelity: {meta['name']}", "",
           f"Weights: {meta['weights']}; quantization: {meta['quantize']}; "
           f"images: {summary['images']} from `{meta['images_dir']}`; "
           f"calibration: {meta['calibration']}.", ""]
  lines += summary_table(summary, meta["quantize"]) + [""]
  ranked = sorted((r for r in rows if r["rmse_over_scale"]),
                  key=lambda r: -float(r["rmse_over_scale"]))[:worst]
  lines += [f"## Worst {len(ranked)} layers (RMSE / scale, "
            f"{meta['debug_images']} images)", "",
            "| op | tensor | RMSE/scale | mean error | max abs error |",
            "| --- | --- | --- | --- | --- |"]
  for r in ranked:
    lines.append(f"| {r['op_name']} | `{r['tensor_name']}` | "
                 f"{float(r['rmse_over_scale']):.3f} | "
                 f"{float(r['mean_error']):.4g} | "
                 f"{float(r['max_abs_error']):.4g} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  save_to = cli.output_dir(cli.user_path(FLAGS.save_to))
  images_dir = cli.user_path(FLAGS.images_dir) or labels_lib.data_path(
      "mnist_heldout")
  paths = preprocess.find_images(images_dir)
  if not paths:
    raise cli.UsageError(f"--images_dir={images_dir}: no images found")
  calibration = converter.calibration_set(cli.user_path(FLAGS.calibration_dir),
                                          FLAGS.num_calibration)
  source = cli.model_source()
  size, ch = source.input_size, source.channels
  norm = source.normalization
  rep = converter.representative_batch(calibration, size, ch, norm)
  tf_model = converter.build_model(source, classifier_activation=None)
  fn = tf_model.get_concrete_function()
  float_model = runtime.Model(converter.convert(fn, "float", None, tf_model))
  quant_tflite = converter.convert(fn, FLAGS.quantize, rep, tf_model)
  quant_model = runtime.Model(quant_tflite)
  exact_model = reference = None
  if FLAGS.quantize in converter.FULL_INTEGER:
    exact_model = exact_forward.ExactModel(quant_tflite)
    reference = runtime.Model(quant_tflite, reference_kernels=True)
  pixels = preprocess.load_images(paths, size, channels=ch, mode="raw")
  summary = evaluate(float_model, quant_model, pixels, norm,
                     folder_labels(paths, images_dir), source.labels,
                     exact_model, reference)
  # Every k-th image, so the debugger sees all classes of a sorted folder.
  step = max(1, len(paths) // FLAGS.debug_images)
  debug_x = runtime.normalize(pixels[::step][:FLAGS.debug_images], norm)
  rows = layer_table(tf_model, FLAGS.quantize, rep, debug_x)
  fields = list(rows[0].keys()) if rows else []
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
  w.writeheader()
  w.writerows(rows)
  meta = {"name": converter.default_name(source, FLAGS.quantize),
          "weights": source.description, "quantize": FLAGS.quantize,
          "images_dir": model_sidecar.portable_path(images_dir),
          "calibration": f"{len(calibration.paths)} images from "
                         f"{calibration.describe()['dir']}",
          "debug_images": len(debug_x)}
  cli.atomic_write(os.path.join(save_to, "fidelity.csv"), buf.getvalue())
  md = markdown(summary, rows, meta, FLAGS.worst)
  if FLAGS.quantize == "int8":
    deployed = converter.convert_source(
        source, "int8", cli.user_path(FLAGS.calibration_dir),
        FLAGS.num_calibration)
    md += "\n" + micro_markdown(compare_runtimes(
        deployed.tflite, pixels, norm, folder_labels(paths, images_dir),
        source.labels))
  cli.atomic_write(os.path.join(save_to, "fidelity.md"), md)
  print(md)


if __name__ == "__main__":
  cli.run(main)
