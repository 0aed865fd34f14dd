r"""Train MobileNetV2, or classify images with a trained one.

  train:    bazel run //mobilenet/keras:train -- train --data_dir=DIR \
                [--val_dir=DIR | --val_split=0.1] [--dataset=mnist] \
                [--train_files='shards/train-*' --val_files='shards/val-*'] \
                [--alpha=0.35] [--input_size=64] [--channels=3] \
                [--epochs=2] [--batch_size=32] [--learning_rate=2e-3] \
                [--init_weights=imagenet|bundled|PATH --freeze=backbone \
                 --head_epochs=1] [--augment=digits|photos|none] \
                [--checkpoint_dir=DIR] [--strategy=default|mirrored|multiworker]
  predict:  bazel run //mobilenet/keras:train -- predict IMAGE [IMAGE ...] \
                [--weights=bundled|auto|imagenet|random|PATH] [--top_k=5]
  eval:     bazel run //mobilenet/keras:train -- eval --data_dir=DIR \
                [--weights=PATH]

DIR has one sub-folder of images per class (the folder names are the class
names).  With --init_weights the weights decide --alpha, --input_size and
--channels unless they are given.  Rerunning an interrupted `train` (Ctrl-C
/ SIGTERM) with the same flags resumes at the step where it stopped.  For several machines run the
same command on each with --strategy=multiworker and its own TF_CONFIG: only
the chief writes the run dir and export; a worker that loses a peer restarts
itself and resumes from the chief's checkpoint (docs/distributed_training.md: Training on N machines).
"""

import shlex
import sys

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order

from mobilenet.core import checkpoint  # pylint: disable=g-bad-import-order
from mobilenet.core import preprocess
from mobilenet.keras import folders
from mobilenet.keras import init_source
from mobilenet.keras import train_config
from mobilenet.keras import train_flags

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(train_flags)  # --help lists them


COMMANDS = ("train", "predict", "eval")
# The command line as typed (absl strips parsed flags from main's argv).
_ARGV = list(sys.argv)


def _config(argv):
  names = ("data_dir", "val_dir", "train_files", "val_files", "val_split",
           "dataset", "alpha", "input_size", "channels", "classes", "epochs",
           "batch_size", "learning_rate", "lr_schedule", "optimizer",
           "checkpoint_dir", "export_path", "strategy",
           "checkpoint_every_steps", "bn_momentum", "bn_reestimate",
           "bn_reestimate_batches", "seed", "init_weights", "freeze",
           "head_epochs", "fine_tune_learning_rate", "fine_tune_bn",
           "augment", "warmup_epochs", "label_smoothing", "weight_decay",
           "ema", "tensorboard", "tensorboard_every_steps", "feature_cache",
           "qat", "granularity", "qat_freeze_bn_after_steps")
  values = {n: getattr(FLAGS, n) for n in names}
  for n in ("data_dir", "val_dir", "train_files", "val_files",
            "checkpoint_dir", "export_path"):
    values[n] = cli.user_path(values[n])
  del argv
  values["command"] = "tools/bazel run //mobilenet/keras:train -- " + \
      " ".join(shlex.quote(a) for a in _ARGV[1:])
  return train_config.Config(**values)


def _train(argv):
  if len(argv) > 2:
    raise cli.UsageError(
        f"train takes no positional arguments, got {argv[2:]}.")
  cfg = _config(argv)
  train_config.validate(cfg)
  # The weights decide the architecture flags left out; a contradiction is
  # one line here, before TensorFlow loads.
  cfg, _, notes = init_source.resolve(cfg)
  for note in notes:
    print(f"note: {note}", file=sys.stderr)
  # Bad folders or shards fail here, before TensorFlow loads.
  if cfg.train_files:
    train_config.scan_records(cfg)
  elif cfg.dataset == "folder":
    train_config.scan(cfg)
  if FLAGS.num_cpu_devices:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.num_cpu_devices)
  from mobilenet.keras import multiworker  # pylint: disable=g-import-not-at-top
  worker = multiworker.this_worker(cfg.strategy)  # bad TF_CONFIG fails here
  from mobilenet.keras import train_lib  # pylint: disable=g-import-not-at-top
  if worker.count > 1:
    result = multiworker.run_restarting(lambda: train_lib.train(cfg), worker)
    if isinstance(result, int):  # gave up restarting in place
      return result
  else:
    result = train_lib.train(cfg)
  if not result.finished:
    return 130
  return 0


def _load_model():
  return cli.model_source()


def _classifier(source, batch_size=None):
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  return forward.build(
      source.params, alpha=source.alpha, input_shape=source.input_shape,
      batch_size=batch_size, classes=source.classes)


def _predict(argv):
  paths = [cli.user_path(p) for p in argv[2:]]
  if not paths:
    raise cli.UsageError("predict needs at least one image path.")
  if FLAGS.top_k < 1:
    raise cli.UsageError(f"--top_k must be at least 1, got {FLAGS.top_k}.")
  source = _load_model()
  images, failed = [], []
  for path in paths:
    try:
      images.append(preprocess.load_image(path, size=source.input_size,
                                          channels=source.channels))
    except preprocess.ImageError as e:
      failed.append(str(e))
  if failed and not images:
    raise cli.UsageError(failed[0] if len(failed) == 1 else
                   f"{len(failed)} images failed: {'; '.join(failed)}")
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mobilenet.core import labels as labels_lib  # pylint: disable=g-import-not-at-top
  batch = preprocess.normalize(np.stack(images), source.normalization)
  probs = _classifier(source)(batch).numpy()
  good = [p for p in paths if all(not f.startswith(p + ":") for f in failed)]
  for path, top in zip(good, labels_lib.decode_predictions(
      probs, source.labels, FLAGS.top_k)):
    shown = ", ".join(f"{name} {score:.4f}" for _, name, score in top)
    print(f"{path}: {shown}")
  for f in failed:
    print(f"error: {f}", file=sys.stderr)
  return 1 if failed else 0


def _eval(argv):
  if len(argv) > 2:
    raise cli.UsageError(
        f"eval takes no positional arguments, got {argv[2:]}.")
  split, names = folders.scan_folder(cli.user_path(FLAGS.data_dir))
  source = _load_model()
  if names != source.labels:
    raise cli.UsageError(f"class folders {names} do not match the model's "
                         f"labels {source.labels[:10]}.")
  import numpy as np  # pylint: disable=g-import-not-at-top
  model = _classifier(source)
  correct = 0
  for i in range(0, len(split), 256):
    batch = preprocess.load_images(split.paths[i:i + 256], source.input_size,
                                   source.channels, source.normalization)
    pred = np.argmax(model(batch).numpy(), -1)
    correct += int(np.sum(pred == np.asarray(split.labels[i:i + 256])))
  accuracy = correct / len(split)
  print(f"accuracy {accuracy:.4f} ({correct}/{len(split)}) of "
        f"{source.description} on {FLAGS.data_dir}")
  if FLAGS.record:
    _record(source, accuracy, len(split))
  return 0


def _record(source, accuracy, count):
  if not source.metadata:
    raise cli.UsageError("--record needs one of our checkpoints (with a .json "
                         "sidecar).")
  path = checkpoint.sidecar_path(source.weights_path)
  checkpoint.update_sidecar(
      path, heldout_accuracy=accuracy, heldout_images=count,
      heldout_eval_command=("tools/bazel run //mobilenet/keras:train -- " +
                            " ".join(shlex.quote(a) for a in _ARGV[1:])))
  print(f"recorded heldout_accuracy in {path}")


def main(argv):
  if len(argv) < 2 or argv[1] not in COMMANDS:
    got = argv[1] if len(argv) > 1 else "nothing"
    print(f"error: expected a command ({', '.join(COMMANDS)}), got {got}; "
          "see --help.", file=sys.stderr)
    return 2
  return {"train": _train, "predict": _predict, "eval": _eval}[argv[1]](argv)


def run():
  # Exits with main's return value; bad input is one `error:` line.
  cli.run(main)


if __name__ == "__main__":
  run()
