r"""Converts MobileNetV2 to .tflite with a JSON sidecar.

  tools/bazel run //mobilenet/tflite:convert -- --save_to out/
  tools/bazel run //mobilenet/tflite:convert -- --save_to out/ \
      --weights bundled --quantize uint8 --num_calibration 50

Writes out/<name>.tflite and out/<name>.json (atomically) and prints a
summary.  --weights=auto takes ImageNet when it is cached or downloadable,
else the bundled digit model, and says which.  --granularity=per_tensor gives
each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED one weight scale instead of
one per output channel (int8 / uint8 only; <name>_per_tensor.tflite);
--equalize first evens out the depthwise convs' channel ranges on the
calibration images (core/equalize.py), which is what per-tensor needs.

--target=micro also writes the TensorFlow Lite Micro build:
<name>_model_data.h/.cc (the model as a C array), <name>_op_resolver.h (the
MicroMutableOpResolver the model needs) and, in the sidecar, the tensor
arena measured in the TFLM interpreter; a model TFLM cannot run is refused
with one line naming the op or tensor, and nothing is written.
--patches=RxC[@LAYER] runs the network up to block LAYER (e.g. block_3) as
an R x C grid of patches, bit-identical, in a smaller arena; without @LAYER
the block is searched, --patches=auto searches blocks and grids (one stage,
then a second after it), all for the smallest arena measured in TFLM;
RxC@LAYER,RxC@LAYER2 patches two stages (patches.py, patch_search.py).

--target=saved_model writes a TensorFlow SavedModel directory
<save_to>/<name> instead (saved_model.py: uint8 pixels in, probabilities and
top-k class names out; variables, so it can be fine-tuned after loading).
"""

import os
import sys

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging

from mobilenet.tflite import converter  # pylint: disable=g-bad-import-order
from mobilenet.tflite import micro_export
from mobilenet.tflite import patch_search

FLAGS = flags.FLAGS
flags.DEFINE_string("save_to", None, "Output directory (created when the "
                    "model is written).")
cli.define_model_flags()
flags.DEFINE_enum("quantize", "int8", list(converter.QUANTIZATIONS),
                  "int8 / uint8: full-integer with int8 / uint8 input and "
                  "output; float16 weights; dynamic-range; float.")
flags.DEFINE_enum("granularity", "per_channel", list(converter.GRANULARITIES),
                  "Weight scales of int8 / uint8 models: per_channel (one "
                  "per output channel) or per_tensor (one per layer, for "
                  "hardware that wants it; files get a _per_tensor suffix).")
flags.DEFINE_bool("equalize", False, "int8 / uint8: first move each "
                  "depthwise conv's large weight ranges into the conv before "
                  "it (float output unchanged on the calibration images), so "
                  "per-tensor scales lose less; files get _equalized.")
flags.DEFINE_string("calibration_dir", None, "Folder of calibration images "
                    "(default: data/calibration, 100 real digits).")
flags.DEFINE_integer("num_calibration", converter.DEFAULT_NUM_CALIBRATION,
                     "Calibration images, first N in sorted path order.")
flags.DEFINE_string("name", None, "Output file stem (default: descriptive).")
flags.DEFINE_enum("target", "tflite", ["tflite", "micro", "saved_model"],
                  "tflite: the .tflite and sidecar; micro: also C++ sources "
                  "for TensorFlow Lite Micro and the measured arena (needs an "
                  "int8 model); saved_model: a TensorFlow SavedModel "
                  "directory <save_to>/<name> (float, no quantization).")
flags.DEFINE_string("patches", "off", "--target=micro only: off | auto | "
                    "RxC[@LAYER][,RxC@LAYER2]: run the first blocks, up to "
                    "LAYER (e.g. block_3), patch by patch on an R x C grid "
                    "of its output (same outputs, smaller arena), then the "
                    "blocks up to LAYER2; auto / no @LAYER: the smallest "
                    "arena measured in TFLM.")
flags.mark_flag_as_required("save_to")


def summary(converted, paths):
  meta = converted.metadata
  model = converter.runtime.Model(converted.tflite, use_default_delegates=False)
  ops = model.op_counts()
  lines = [
      f"wrote {paths[0]}",
      f"      {paths[1]}",
      f"weights       {meta['weights']['description']}",
      f"model         alpha={meta['alpha']} input={meta['input_size'][0]}x"
      f"{meta['input_size'][1]}x{meta['channels']} classes={meta['classes']}"
      f" normalization={meta['normalization']['mode']}",
      f"quantization  {meta['quantization']} (weights: "
      f"{meta['weights_quantization']}"
      + (f", --granularity={meta['granularity']})" if meta["granularity"]
         else ")"),
  ]
  if meta["calibration"]:
    c = meta["calibration"]
    lines.append(f"calibration   {c['count']} images from {c['dir']} "
                 f"(sorted, files sha256 {c['files_sha256'][:12]})")
  if meta.get("equalization"):
    rows = meta["equalization"]["layers"]
    lines.append(f"equalized     {len(rows)} depthwise convs: widest channel "
                 f"spread {max(r['spread_before'] for r in rows):.0f}x -> "
                 f"{max(r['spread_after'] for r in rows):.0f}x (max/median)")
  for kind in ("input", "output"):
    d = meta[kind]
    q = (f" scale={d['scale']:.6g} zero_point={d['zero_point']}"
         if d["scale"] else "")
    lines.append(f"{kind:<13} {d['dtype']} {d['shape']}{q}")
  lines.append(f"size          {meta['tflite_bytes']:,} bytes "
               f"({meta['tflite_bytes'] / 1024:.1f} KiB), sha256 "
               f"{meta['tflite_sha256'][:16]}")
  lines.append(f"ops           {sum(ops.values())}: " + ", ".join(
      f"{k} x{v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])))
  if "micro" in meta:
    lines += micro_export.summary_lines(meta["micro"])
    lines += [f"              {p}" for p in paths[2:]]
  lines.append(f"time          {converted.seconds:.1f} s")
  return "\n".join(lines)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # TF's converter INFO chatter
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments {argv[1:]}; see --help")
  if FLAGS.input_size is not None and FLAGS.input_size < 32:
    raise cli.UsageError(f"--input_size={FLAGS.input_size} is too small; "
                         "MobileNetV2 needs at least 32")
  if FLAGS.alpha is not None and not FLAGS.alpha > 0:
    raise cli.UsageError(f"--alpha={FLAGS.alpha} must be positive (e.g. 0.35,"
                         " 0.5, 1.0)")
  save_to = cli.output_dir(cli.user_path(FLAGS.save_to))
  if FLAGS.patches != "off" and FLAGS.target != "micro":
    raise cli.UsageError(f"--patches={FLAGS.patches} is for --target=micro "
                         "(TFLM's arena); add --target=micro or drop it")
  patch_search.parse(FLAGS.patches)  # a malformed spec fails before converting
  if FLAGS.target == "saved_model":
    return _saved_model(save_to)
  calibration_dir = cli.user_path(FLAGS.calibration_dir)
  converter.check_granularity(FLAGS.quantize, FLAGS.granularity)
  if FLAGS.quantize in converter.FULL_INTEGER:
    # Fail on bad calibration input before the slow part.
    converter.calibration_set(calibration_dir, FLAGS.num_calibration)
  source = cli.model_source()
  if FLAGS.weights == "auto":
    print(f"weights=auto: using {source.description}")
  converted = converter.convert_source(
      source, FLAGS.quantize, calibration_dir, FLAGS.num_calibration,
      name=FLAGS.name, granularity=FLAGS.granularity,
      equalize=FLAGS.equalize)
  if FLAGS.target == "micro":
    converted = micro_export.for_micro(converted, FLAGS.patches)
  paths = converter.save(converted, save_to)
  print(summary(converted, paths))
  sys.stdout.flush()


def _saved_model(save_to):
  for flag in ("quantize", "granularity", "calibration_dir",
               "num_calibration", "equalize"):
    if FLAGS[flag].present:
      raise cli.UsageError(f"--{flag} is for the .tflite targets; a "
                           "SavedModel keeps the float weights")
  source = cli.model_source()
  if FLAGS.weights == "auto":
    print(f"weights=auto: using {source.description}")
  from mobilenet.tflite import saved_model  # pylint: disable=g-import-not-at-top
  path = saved_model.save(source, save_to, name=FLAGS.name)
  size = source.input_size
  print(f"wrote {path}\n"
        f"weights       {source.description}\n"
        f"model         alpha={source.alpha} input={size}x{size}x"
        f"{source.channels} classes={source.classes} normalization="
        f"{saved_model.classifier.normalization_spec(source.normalization)['mode']}"
        f" (inside the graph)\n"
        f"signatures    {', '.join(saved_model.SIGNATURES)}")
  sys.stdout.flush()


if __name__ == "__main__":
  cli.run(main)
