r"""Image folder (one sub-folder per class, as `train` reads) -> sharded
TFRecords in TF-Models' ImageNet schema, for `train --train_files`.

  tools/bazel run //tools:make_tfrecords -- --data_dir=DIR --out_dir=shards \
      [--prefix=train] [--num_shards=4] [--seed=0] [--overwrite]
  tools/bazel run //tools:make_tfrecords -- --verify --out_dir=shards \
      [--prefix=train]

Writes <out_dir>/<prefix>-00000-of-00004 ... and the sidecar <prefix>.json
(class names in label order, counts, schema version); the schema is
mobilenet/keras/record_schema.py, the writing tools/shard_writer.py.  Images
are shuffled (seeded) before they are dealt round-robin to the shards, so
every shard mixes all classes.  Unreadable images are skipped and counted.
Shards are written to temp files and renamed only when all are complete:
an error leaves nothing.  --verify reads back a set (after a copy, say)
and names every shard that is missing, truncated or damaged
(tools/shard_verify.py).
"""

import os
import sys

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order

from mobilenet.keras import record_schema
from tools import shard_verify
from tools import shard_writer

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Image folder: one sub-folder of "
                    "images per class (the folder names are the classes).")
flags.DEFINE_string("out_dir", None, "Where the shards and the sidecar go.")
flags.DEFINE_string("prefix", "train", "Shard name prefix: train, val, ...")
flags.DEFINE_integer("num_shards", 4, "Number of shards; at least the number "
                     "of training workers (each reads whole shards).")
flags.DEFINE_integer("seed", 0, "Seed of the order images are written in.")
flags.DEFINE_boolean("overwrite", False, "Replace existing shards and sidecar "
                     "of this prefix in --out_dir.")
flags.DEFINE_boolean("verify", False, "Write nothing: read every record of "
                     "the set <out_dir>/<prefix>-* against its sidecar and "
                     "name each shard that is missing, truncated or damaged.")


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected argument(s) {' '.join(argv[1:])}; all "
                         "options are --flags (see --helpshort).")
  if not FLAGS.out_dir:
    raise cli.UsageError("--out_dir is not set; pass the directory for the "
                         "shards.")
  if not FLAGS.prefix or os.sep in FLAGS.prefix:
    raise cli.UsageError(f"--prefix must be a plain name such as train, got "
                         f"{FLAGS.prefix!r}.")
  if FLAGS.verify:
    return _verify(cli.user_path(FLAGS.out_dir), FLAGS.prefix)
  data_dir = cli.user_path(FLAGS.data_dir)
  out_dir = cli.output_dir(cli.user_path(FLAGS.out_dir), "--out_dir")
  doc = shard_writer.write_shards(data_dir, out_dir, FLAGS.prefix,
                                 FLAGS.num_shards, FLAGS.seed,
                                 FLAGS.overwrite)
  n = len(doc["shards"])
  first = record_schema.shard_name(FLAGS.prefix, 0, n)
  print(f"wrote {doc['num_records']} images of {len(doc['class_names'])} "
        f"classes in {n} shard(s) {os.path.join(out_dir, first)}"
        f"{' ...' if n > 1 else ''} + {FLAGS.prefix}.json; "
        f"{len(doc['skipped_files'])} unreadable skipped")
  for problem in doc["skipped_files"][:5]:
    print(f"warning: skipped {problem}", file=sys.stderr)
  return 0


def _verify(out_dir, prefix):
  if FLAGS.data_dir:
    raise cli.UsageError("--verify checks the shards in --out_dir; drop "
                         "--data_dir.")
  shards, count, bad = shard_verify.verify(out_dir, prefix)
  if bad:
    more = f" (and {len(bad) - 1} more above)" if len(bad) > 1 else ""
    raise cli.UsageError(
        f"{len(bad)} of {shards} shard(s) bad: {bad[0]}{more}; copy them "
        "again, or rewrite the set from the images with --overwrite.")
  print(f"verified {shards} shard(s) of {prefix}: {count} records, as the "
        "sidecar lists")
  return 0


if __name__ == "__main__":
  cli.run(main)
