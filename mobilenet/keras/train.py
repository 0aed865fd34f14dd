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

FLAGS = flags.FLAGS
_D = train_config.Config()

flags.DEFINE_string("data_dir", None, "Training images: one sub-folder per "
                    "class (eval: the images to score).")
flags.DEFINE_string("val_dir", None, "Validation images, same class "
                    "sub-folders as --data_dir.")
flags.DEFINE_string("train_files", None, "Training images as sharded "
                    "TFRecords (//tools:make_tfrecords), a quoted pattern "
                    "such as 'shards/train-*'; instead of --data_dir.")
flags.DEFINE_string("val_files", None, "Validation TFRecord shards, e.g. "
                    "'shards/val-*'; needed with --train_files.")
flags.DEFINE_float("val_split", _D.val_split, "Fraction of --data_dir held "
                   "out for validation when --val_dir is not given.")
flags.DEFINE_enum("dataset", "folder", ["folder", "mnist"], "'mnist': Keras' "
                  "MNIST download (needs network) instead of --data_dir.")
_ARCH = init_source.DEFAULTS
flags.DEFINE_float("alpha", None, "Width multiplier; default: read from the "
                   "shapes of --init_weights (predict/eval: --weights), else "
                   f"{_ARCH['alpha']}.")
flags.DEFINE_integer("input_size", None, "Square input size in px; default: "
                     "the weights' (our checkpoint's sidecar, the official "
                     "Keras file name, else 224 with a note), else "
                     f"{_ARCH['input_size']}.")
flags.DEFINE_integer("channels", None, "1 (grayscale) or 3 (RGB); default: "
                     "those of --init_weights, else "
                     f"{_ARCH['channels']}. Set, it adapts the weights' "
                     "first convolution.")
flags.DEFINE_integer("classes", None, "Number of classes (default: inferred "
                     "from the class folders; must agree when given).")
flags.DEFINE_integer("epochs", _D.epochs, "Epochs to train in total.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Learning rate.")
flags.DEFINE_enum("lr_schedule", _D.lr_schedule,
                  list(train_config.LR_SCHEDULES), "cosine: decay to 0 over "
                  "each phase (after --warmup_epochs); constant.")
flags.DEFINE_enum("optimizer", _D.optimizer, list(train_config.OPTIMIZERS),
                  "Optimizer.")
flags.DEFINE_string("checkpoint_dir", _D.checkpoint_dir, "Checkpoints, "
                    "run.json, training_curve.png and the exported model.")
flags.DEFINE_string("export_path", None, "Final weights (.h5, with a .json "
                    "sidecar beside it); default <checkpoint_dir>/model.h5.")
flags.DEFINE_enum("strategy", _D.strategy, list(train_config.STRATEGIES),
                  "tf.distribute strategy. multiworker: run this command on "
                  "every machine with its own TF_CONFIG; only the chief "
                  "writes --checkpoint_dir and the export.")
flags.DEFINE_integer("checkpoint_every_steps", _D.checkpoint_every_steps,
                     "Also checkpoint every this many steps (0: at epoch "
                     "ends and on SIGINT/SIGTERM only). With "
                     "--strategy=multiworker a worker that loses a peer "
                     "restarts itself and all resume from the chief's last "
                     "checkpoint: the steps after it are recomputed on the "
                     "same batches, never skipped "
                     "(docs/distributed_training.md).")
flags.DEFINE_integer("num_cpu_devices", 0, "Split the CPU into this many "
                     "logical devices (to try --strategy=mirrored on CPU).")
flags.DEFINE_float("bn_momentum", _D.bn_momentum, "BatchNorm moving-average "
                   "momentum. 0.99 (~100-step average) tracks the weights "
                   "within an epoch, so every epoch's val_accuracy is what the "
                   "exported model would score; Keras' 0.999 needs thousands "
                   "of steps (chance-level validation on short runs).")
flags.DEFINE_boolean("bn_reestimate", _D.bn_reestimate, "Re-estimate the BN "
                     "moving statistics over training batches at the end.")
flags.DEFINE_integer("bn_reestimate_batches", _D.bn_reestimate_batches,
                     "Training batches used for BN re-estimation.")
flags.DEFINE_integer("seed", _D.seed, "Seed for init, shuffling and split.")
flags.DEFINE_string("init_weights", None, "train: start from these weights "
                    "(imagenet, bundled, a Keras-layout .h5 or our "
                    "checkpoint) instead of random init; another class count "
                    "gets a fresh head, 3-channel weights on --channels=1 sum "
                    "Conv1 over RGB.")
flags.DEFINE_string("freeze", _D.freeze, "train: none, backbone (all but the "
                    "head) or a Keras layer name (it and every layer before "
                    "it); frozen layers keep their weights and BN "
                    "statistics bit-identical.")
flags.DEFINE_integer("head_epochs", _D.head_epochs, "train with "
                     "--init_weights: first epochs with the backbone frozen "
                     "(only the new head learns), then the rest of --epochs "
                     "with --freeze at --fine_tune_learning_rate.")
flags.DEFINE_float("fine_tune_learning_rate", None, "Learning rate after the "
                   "head epochs (default: --learning_rate / 10 with "
                   "--head_epochs, else --learning_rate).")
flags.DEFINE_enum("fine_tune_bn", _D.fine_tune_bn,
                  list(train_config.FINE_TUNE_BN), "With --init_weights: "
                  "'frozen' keeps every BatchNorm in inference mode with its "
                  "pretrained statistics (gamma/beta fixed) - training-mode BN "
                  "re-learns them from small batches of the new data and "
                  "wrecks the features (ImageNet->digits: 69.6% vs 96.9%); "
                  "'train' updates them like from scratch.")
flags.DEFINE_enum("augment", _D.augment, list(train_config.AUGMENTS),
                  "Training-set augmentation in the tf.data pipeline (never "
                  "on validation): digits = small shifts, rotation, zoom "
                  "(mild; the default); "
                  "photos = random-resized crop, horizontal flip, colour "
                  "jitter (for photo folders); none.")
flags.DEFINE_float("warmup_epochs", _D.warmup_epochs, "Linear learning-rate "
                   "warmup (epochs, in each phase).")
flags.DEFINE_float("label_smoothing", _D.label_smoothing, "Label smoothing "
                   "of the training loss (e.g. 0.1).")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Decoupled weight decay "
                   "(any optimizer; --optimizer=adamw defaults to 0.004).")
flags.DEFINE_float("ema", _D.ema, "Momentum of an exponential moving "
                   "average of the weights used for validation and export "
                   "(e.g. 0.999); 0 = off.")
flags.DEFINE_boolean("tensorboard", _D.tensorboard, "train: write "
                     "TensorBoard event files to <checkpoint_dir>/tensorboard "
                     "(chief only; docs/tensorboard.md).")
flags.DEFINE_integer("tensorboard_every_steps", _D.tensorboard_every_steps,
                     "train: step/loss and step/learning_rate every this "
                     "many steps.")
flags.DEFINE_boolean("feature_cache", _D.feature_cache, "train: when only "
                     "the head learns and --augment=none, compute the "
                     "backbone's pooled features once and train the head on "
                     "them (docs/feature_cache.md).")
flags.DEFINE_boolean("qat", _D.qat, "train: quantization-aware training - "
                     "BN folded into fake-quantized weights, activation "
                     "ranges learned by moving average; the export adds an "
                     "int8 .tflite converted from them, no calibration set "
                     "(docs/qat.md).")
flags.DEFINE_string("granularity", _D.granularity, "train --qat: int8 "
                    "weight scales per output channel (per_channel) or one "
                    "per tensor (per_tensor).")
flags.DEFINE_integer("qat_freeze_bn_after_steps",
                     _D.qat_freeze_bn_after_steps, "train --qat: BNs fold "
                     "their moving statistics, kept, after this many steps "
                     "(TFLite's BN freeze; docs/qat.md); 0: never.")
flags.DEFINE_string("weights", "bundled", "predict/eval: auto, imagenet, "
                    "bundled, random or a .h5/.json path.")
flags.DEFINE_string("labels", None, "predict/eval: class-names file, one per "
                    "line (a leading 'background' line fits 1001 outputs); "
                    "default: the weights' own names.")
flags.DEFINE_integer("top_k", 5, "predict: labels shown per image.")
flags.DEFINE_boolean("record", False, "eval: store the accuracy in the "
                     "checkpoint's .json sidecar as heldout_accuracy.")

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
