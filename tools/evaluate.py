r"""Scores models on a labelled data set, side by side.

  tools/bazel run //tools:evaluate -- --data data/mnist_heldout \
      --model bundled --model mobilenet/tflite/mobilenet_v2_int8.tflite \
      --model micro:mobilenet/tflite/mobilenet_v2_int8.tflite --save_to eval/
  tools/bazel run //tools:evaluate -- --data 'shards/val-*' \
      --model /tmp/run/model.h5 --model out/saved_model_dir

--model (repeat it): bundled | imagenet | random | PATH.h5 | checkpoint .json
(the float raw-op forward), a SavedModel directory, a .tflite (LiteRT;
`micro:PATH` or --runtime=micro for TensorFlow Lite Micro).  --data: an
image folder (one sub-folder per class) or a TFRecord shard pattern
(make_tfrecords).  Prints top-1/top-5 per model and, with several, their
top-1 agreement; --save_to writes <report>.md, <report>.json (per-class
precision/recall, confusion matrices) and <report>_<model>.png confusion
matrices, all or nothing.
"""

import os
import sys

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order
import numpy as np

from mobilenet.core import files  # pylint: disable=g-bad-import-order
from mobilenet.core import progress
from mobilenet.evaluate import data as data_lib
from mobilenet.evaluate import metrics
from mobilenet.evaluate import models as models_lib
from mobilenet.evaluate import report

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("model", None, "Model to score; repeat for a "
                          "side-by-side comparison (see --help's header).")
flags.DEFINE_string("data", None, "Image folder (one sub-folder per class) "
                    "or TFRecord shard pattern, e.g. 'shards/val-*'.")
flags.DEFINE_enum("runtime", "litert", list(models_lib.RUNTIMES),
                  "Runtime for .tflite models without a litert:/micro: "
                  "prefix.")
flags.DEFINE_string("labels", None, "Class names of every model, one per "
                    "line (default: each model's own, said in a note when "
                    "assumed).")
flags.DEFINE_integer("batch_size", 64, "Images decoded and scored at once.",
                     lower_bound=1)
flags.DEFINE_string("save_to", None, "Directory for the report files (none "
                    "are written without it).")
flags.DEFINE_string("report", "evaluation", "File-name stem of the report.")
flags.DEFINE_string("title", None, "Report title (default: from the data).")
flags.mark_flag_as_required("model")
flags.mark_flag_as_required("data")


def _evaluate(models, data):
  """(probabilities per model over the images decoded, their labels,
  skipped images)."""
  skipped = {}
  probs = [[] for _ in models]
  truth = []
  shapes = sorted({(m.input_size, m.channels) for m in models})
  bar = progress.Progress(len(data))
  done = 0
  for names, payloads, labels in data.batches(FLAGS.batch_size):
    decoded = {}
    for size, channels in shapes:
      decoded[size, channels] = data_lib.decode(names, payloads, size,
                                                channels, skipped)
    # An image unreadable at one size is unreadable at all; keep only the
    # images every model sees.
    keep = set.intersection(*(set(k) for _, k in decoded.values()))
    for i, m in enumerate(models):
      pixels, kept = decoded[m.input_size, m.channels]
      rows = [r for r, j in enumerate(kept) if j in keep]
      if rows:
        probs[i].append(np.asarray(m.predict(pixels[rows])))
    truth.extend(labels[j] for j in sorted(keep))
    done += len(names)
    bar.update(done, len(skipped))
  if not truth:
    raise data_lib.DataError(f"--data={data.what}: none of the {len(data)} "
                             "images could be read; "
                             + next(iter(skipped.values()), ""))
  return [np.concatenate(p) for p in probs], np.asarray(truth), skipped


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments {argv[1:]}; use --model and "
                         "--data")
  save_to = (cli.output_dir(cli.user_path(FLAGS.save_to))
             if FLAGS.save_to else None)
  data = data_lib.load(cli.user_path(FLAGS.data))
  data.what = FLAGS.data  # as the user wrote it, for the report
  labels = cli.user_path(FLAGS.labels)
  models = [models_lib.load(spec, FLAGS.runtime, labels)
            for spec in FLAGS.model]
  models_lib.name_apart(models, FLAGS.model)
  for m in models:
    for note in m.notes:
      print(f"note: {m.name}: {note}", file=sys.stderr)
  mappings = [metrics.class_map(data.class_names, m.labels, m.name)
              for m in models]
  probs, truth, skipped = _evaluate(models, data)
  scores = [metrics.score(p, truth, mp, data.class_names)
            for p, mp in zip(probs, mappings)]
  predicted = [np.asarray(m.labels)[p.argmax(1)] for m, p in
               zip(models, probs)]
  agree = metrics.agreement(predicted)
  lines = report.summary_table(models, scores)
  if len(models) > 1:
    lines.append("top-1 agreement: " + ", ".join(
        f"{models[i].name} vs {models[j].name} {100 * agree[i][j]:.2f} %"
        for i in range(len(models)) for j in range(i + 1, len(models))))
  if skipped:
    lines.append(f"{len(skipped)} unreadable image(s) skipped")
  print("\n".join(lines))
  if save_to:
    _save(save_to, models, scores, agree, data, skipped)
  return 0


def _save(save_to, models, scores, agree, data, skipped):
  stem = FLAGS.report
  slugs, outputs = [], {}
  for m in models:
    slug = m.slug if m.slug not in slugs else f"{m.slug}_{len(slugs)}"
    slugs.append(slug)
  pngs = [f"{stem}_{slug}.png" for slug in slugs]
  for m, s, png in zip(models, scores, pngs):
    outputs[png] = report.confusion_png(m.name, s, data.class_names)
  title = FLAGS.title or f"Evaluation on {os.path.basename(data.what)}"
  outputs[stem + ".md"] = report.markdown(title, models, scores, agree, data,
                                          skipped, pngs)
  outputs[stem + ".json"] = report.to_json(models, scores, agree, data,
                                           skipped)
  files.atomic_write_all({os.path.join(save_to, name): content
                          for name, content in outputs.items()})
  print(f"wrote {os.path.join(save_to, stem + '.md')} (+ .json, "
        f"{len(pngs)} PNG)")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
