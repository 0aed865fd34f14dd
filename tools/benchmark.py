r"""Speed of this MobileNetV2 against keras.applications + the stock converter.

  tools/bazel run //tools:benchmark -- [--quick] [--only=P1,P3] [--profile]
      [--out_dir data/benchmark]

Measures P1-P8 (see benchmark_run.py) as ratios of interleaved medians in
one process (benchmark_harness.py), each side through its real code path
(benchmark_measures.py), then writes benchmark.md, benchmark.json and
benchmark.png into --out_dir (benchmark_report.py: temp files + rename,
nothing partial) and prints the table.
"""

import datetime
import os
import sys
import time

from mobilenet.core import cli  # first: quiets TF/LiteRT start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging

from tools import benchmark_harness as harness

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small configuration (alpha 0.35, 96 px, "
                  "fewer repeats) that finishes in a minute or two.")
flags.DEFINE_string("out_dir", "data/benchmark", "Where benchmark.md/.json/.png "
                    "go (relative to your shell under bazel run).")
flags.DEFINE_list("only", [], "Run a subset, e.g. --only=P1,P3 (default: all).")
flags.DEFINE_integer("seed", 0, "Seed of the random inputs and of the "
                     "training run (P6); the shared float weights are the "
                     "live random model of mobilenet.testing.models.")
flags.DEFINE_bool("profile", False, "Also time TF ops by type at the P1 and "
                  "P2 batch sizes (tf.profiler); recorded in the JSON.")

def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {e}; see --helpshort\n")
    sys.exit(2)


def check_flags():
  unknown = [m for m in FLAGS.only if m.upper() not in harness.METRICS]
  if unknown:
    raise cli.UsageError(f"--only: unknown metric(s) {', '.join(unknown)}; "
                         f"choose from {','.join(harness.METRICS)}")
  out_dir = cli.output_dir(cli.user_path(FLAGS.out_dir), "--out_dir")
  only = tuple(m.upper() for m in FLAGS.only) or harness.METRICS
  return out_dir, only


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected argument(s) {' '.join(argv[1:])}; "
                         "all options are --flags (see --helpshort)")
  out_dir, only = check_flags()
  # TensorFlow loads here, after the flags are checked.
  from tools import benchmark_report as report  # pylint: disable=g-import-not-at-top
  from tools import benchmark_run
  cfg = harness.QUICK if FLAGS.quick else harness.FULL
  logging.set_verbosity(logging.INFO)
  load_before = os.getloadavg()
  logging.info("benchmark %s config; load average %.2f %.2f %.2f", cfg.name,
               *load_before)
  start = time.time()
  metrics, details = benchmark_run.run(cfg, only, FLAGS.seed, FLAGS.profile)
  meta = {
      "command": "tools/bazel run //tools:benchmark --" +
                 (" --quick" if FLAGS.quick else "") +
                 (f" --only={','.join(only)}" if FLAGS.only else ""),
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "seconds": time.time() - start,
      "load_before": load_before, "load_after": os.getloadavg(),
      "env": report.environment(), **details,
  }
  paths = report.write_reports(metrics, meta, out_dir)
  print(report.markdown(metrics, meta))
  print("wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
  cli.run(main, flags_parser=_parse_flags)
