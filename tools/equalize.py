r"""Writes a copy of a model with its depthwise weight ranges equalized.

  tools/bazel run //tools:equalize -- --weights=model.h5 \
      --calibration_dir=images/ --output=eq/model.h5

Per-tensor int8 (one weight scale per layer) rounds most of a depthwise
conv's channels to a few steps when a few channels' BN-folded weights are
much larger (mobilenet/core/equalize.py says why and what is moved).  The
copy computes the same float outputs on the calibration images; feed it to
`train --qat --granularity=per_tensor --init_weights=eq/model.h5` or to
`convert --granularity=per_tensor` (which also takes --equalize itself).
Writes the .h5 and our sidecar beside it and prints, per depthwise conv, the
spread of its channel ranges (max/median) before and after.
"""

import os
import sys

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order

from mobilenet.core import arch  # pylint: disable=g-bad-import-order
from mobilenet.core import checkpoint
from mobilenet.core import equalize
from mobilenet.core import params as params_lib
from mobilenet.tflite import converter

FLAGS = flags.FLAGS
cli.define_model_flags(weights="bundled")
flags.DEFINE_string("output", None, "The equalized .h5 to write (its .json "
                    "sidecar goes beside it).")
flags.DEFINE_string("calibration_dir", None, "Folder of images the model "
                    "will see (default: data/calibration, 100 real digits).")
flags.DEFINE_integer("num_calibration", converter.DEFAULT_NUM_CALIBRATION,
                     "Calibration images, first N in sorted path order.")


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments {argv[1:]}; see --help")
  output = cli.user_path(FLAGS.output)
  if not output or not output.endswith(".h5"):
    raise cli.UsageError(f"--output={FLAGS.output or ''}: name the .h5 file "
                         "to write, e.g. --output=eq/model.h5")
  cli.output_dir(os.path.dirname(os.path.abspath(output)), "--output")
  calibration = converter.calibration_set(
      cli.user_path(FLAGS.calibration_dir), FLAGS.num_calibration)
  source = cli.model_source()
  if (source.metadata or {}).get("qat"):
    raise cli.UsageError(f"{source.description} has QAT ranges trained for "
                         "its weights as they are; equalize the float model "
                         "before --qat")
  images = converter.representative_batch(
      calibration, source.input_size, source.channels,
      converter.source_field(source, "normalization"))
  params, report = equalize.equalize_source_params(source, images)
  net = arch.derive(source.alpha, source.channels, source.classes,
                    source.include_top)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  params_lib.save_h5(params, output, net)
  checkpoint.write_sidecar(
      checkpoint.sidecar_path(output), output, alpha=source.alpha,
      input_size=source.input_size, channels=source.channels,
      labels=source.labels, normalization=source.normalization,
      equalized_from=source.description,
      equalization=equalize.summary(report, len(images)))
  print(equalize.table(report))
  print(f"wrote {output}\n      {checkpoint.sidecar_path(output)}")
  sys.stdout.flush()


if __name__ == "__main__":
  cli.run(main)
