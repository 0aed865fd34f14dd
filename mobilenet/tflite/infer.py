r"""Classifies images with a .tflite model and can dump every tensor.

  tools/bazel run //mobilenet/tflite:infer -- -i data/samples/digit_7.png
  tools/bazel run //mobilenet/tflite:infer -- -i a.png -i b.jpg \
      --model out/m.tflite --labels labels.txt --top_k 3 \
      --save_to dump/ --data_format channel_first
  tools/bazel run //mobilenet/tflite:infer -- -i a.png --runtime micro
  tools/bazel run //mobilenet/tflite:infer -- -i a.png --runtime exact

--runtime=litert (default) runs LiteRT (XNNPACK where it applies);
--runtime=micro runs the same file in the TensorFlow Lite Micro interpreter,
the kernels a microcontroller build compiles; --runtime=exact computes it with
the integer-exact forward (exact_forward: TensorFlow integer ops, bit for bit
the reference kernels TFLM and LiteRT's BUILTIN_REF run).

Default model: the int8 bundled digit model built by
//mobilenet/tflite:mobilenet_v2_int8, with the labels from its sidecar.
With --save_to, each image gets DIR/<n>_<image stem>/ holding one
<index>_<tensor name>.npy per tensor (a .txt for tensors without data) and
tensors.tsv listing name, index, dtype, shape and quantization.  A LiteRT
dump of a full-integer model also holds the integer-exact forward's value of
every computed tensor (<index>_<tensor name>.exact.npy) and, in tensors.tsv,
the largest difference between the two in quantization steps, so a layer
where LiteRT's kernels round differently from the reference stands out.
"""

import os
import shutil
import sys
import tempfile

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
import numpy as np

from mobilenet.core import files  # pylint: disable=g-bad-import-order
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import runtime

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("image", None, "Image file; repeat for several.",
                          short_name="i")
flags.DEFINE_string("model", None, "A .tflite classifier (default: the "
                    "bundled int8 digit model).")
flags.DEFINE_string("labels", None, "Class names, one per line (a leading "
                    "'background' line fits 1001 outputs; default: the "
                    "model's sidecar, else ImageNet names for 1000/1001 "
                    "outputs, else output indices, said in a note).")
flags.DEFINE_integer("top_k", 5, "Classes shown per image.", lower_bound=1)
flags.DEFINE_enum("runtime", "litert", ["litert", "micro", "exact"],
                  "litert: LiteRT; micro: the TensorFlow Lite Micro "
                  "interpreter; exact: the integer-exact forward (TensorFlow "
                  "integer ops, bit for bit TFLite's reference kernels).")
flags.DEFINE_integer("num_threads", None, "LiteRT threads (default: LiteRT's).",
                     lower_bound=1)
flags.DEFINE_string("save_to", None, "Dump every intermediate tensor here.")
flags.DEFINE_enum("data_format", "channel_last",
                  ["channel_first", "channel_last"],
                  "Layout of dumped 4-D activations (TFLite computes NHWC).")
flags.mark_flag_as_required("image")


def class_names(model, meta):
  names, note = runtime.class_names(model.num_classes, meta,
                                    cli.user_path(FLAGS.labels))
  if note:
    print(f"note: {note}", file=sys.stderr)
  return names


def _safe(name):
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]


def _layout(value, data_format):
  if data_format == "channel_first":
    return np.transpose(value, (0, 3, 1, 2)), "NCHW"
  return value, "NHWC"


def dump_tensors(model, directory, data_format, exact=None):
  """Writes the tensors of the last invoke into `directory` (a new dir);
  `exact`: the integer-exact forward's tensors for the same input
  ({index: array}), written beside each computed tensor and compared."""
  activations = model.activation_indices()
  rows = ["index\tname\tdtype\tshape\tlayout\tscale\tzero_point\tfile"
          "\texact_file\tmax_steps_from_exact"]
  for detail, value in model.tensors():
    index = int(detail["index"])
    name = detail["name"]
    scale, zero_point = detail["quantization"]
    layout = exact_file = exact_steps = "-"
    stem = f"{index:04d}_{_safe(name)}"
    dtype = np.dtype(detail["dtype"]).name
    if value is None:
      fname = stem + ".txt"
      shape = [int(v) for v in detail["shape"]]
      with open(os.path.join(directory, fname), "w", encoding="utf-8") as f:
        f.write(f"name: {name}\nindex: {index}\ndtype: {dtype}\n"
                f"shape: {shape}\nscale: {scale}\nzero_point: {zero_point}\n"
                "data: none (LiteRT keeps no buffer for this tensor)\n")
    else:
      if exact is not None and index in exact:
        theirs = exact[index]
        if np.issubdtype(value.dtype, np.integer):
          exact_steps = str(int(np.abs(value.astype(np.int64) -
                                       theirs.astype(np.int64)).max()))
        if theirs.ndim == 4:
          theirs, _ = _layout(theirs, data_format)
        exact_file = stem + ".exact.npy"
        np.save(os.path.join(directory, exact_file), theirs)
      if value.ndim == 4 and index in activations:
        value, layout = _layout(value, data_format)
      fname = stem + ".npy"
      shape = list(value.shape)
      np.save(os.path.join(directory, fname), value)
    rows.append(f"{index}\t{name}\t{dtype}\t{shape}\t{layout}\t{scale:.9g}\t"
                f"{zero_point}\t{fname}\t{exact_file}\t{exact_steps}")
  with open(os.path.join(directory, "tensors.tsv"), "w",
            encoding="utf-8") as f:
    f.write("\n".join(rows) + "\n")


def _exact_forward():
  # Imports TensorFlow: only runs that compute the integer-exact forward pay.
  from mobilenet.tflite import exact_forward  # pylint: disable=g-import-not-at-top
  return exact_forward


def _exact_or_note(model_path):
  """The integer-exact forward for a LiteRT dump's comparison column, or
  None with a note saying why the column stays empty."""
  exact_forward = _exact_forward()
  try:
    return exact_forward.ExactModel(model_path)
  except runtime.ModelFileError as e:  # LiteRT ran it: not full-integer
    print(f"note: no integer-exact column in the dump: {e}", file=sys.stderr)
    return None


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments {argv[1:]}; use -i IMAGE")
  model_path = (cli.user_path(FLAGS.model) if FLAGS.model else
                runtime.default_model())
  save_to = cli.output_dir(cli.user_path(FLAGS.save_to)) if FLAGS.save_to else None
  dump = save_to is not None
  exact = None
  if FLAGS.runtime == "micro":
    for flag, value in (("--save_to", FLAGS.save_to),
                        ("--num_threads", FLAGS.num_threads)):
      if value is not None:
        raise cli.UsageError(f"{flag} is for --runtime=litert or exact; "
                             "TFLite Micro runs one thread and keeps no "
                             "tensor dump")
    model = micro_runtime.MicroModel(model_path)
  elif FLAGS.runtime == "exact":
    if FLAGS.num_threads is not None:
      raise cli.UsageError("--num_threads is for --runtime=litert")
    model = _exact_forward().ExactModel(model_path)
  else:
    model = runtime.Model(model_path, num_threads=FLAGS.num_threads,
                          preserve_all_tensors=dump)
    if dump:
      exact = _exact_or_note(model_path)
  meta = runtime.read_sidecar(model_path)
  names = class_names(model, meta)
  normalization = (meta or {}).get("normalization", "tf")
  paths = [cli.user_path(p) for p in FLAGS.image]
  pixels = model.load_images(paths)

  lines = []
  for n, (shown, image) in enumerate(zip(FLAGS.image, pixels)):
    scores = model.predict_pixels(image[None], normalization)[0]
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    lines.append(shown)
    for i in order[:FLAGS.top_k]:
      lines.append(f"  {names[i]:<24} {scores[i]:.4f}  [{i}]")
    if dump:
      stem = f"{n}_{_safe(os.path.splitext(os.path.basename(shown))[0])}"
      os.makedirs(save_to, exist_ok=True)  # now there is something to dump
      tmp = tempfile.mkdtemp(prefix=".tmp-", dir=save_to)
      try:
        dump_tensors(model, tmp, FLAGS.data_format, exact and exact.forward(
            model.quantize_pixels(image[None], normalization)))
        files.replace_dir(tmp, os.path.join(save_to, stem))
      except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
      lines.append(f"  tensors -> {os.path.join(save_to, stem)}")
  print("\n".join(lines))
  sys.stdout.flush()


if __name__ == "__main__":
  cli.run(main)
