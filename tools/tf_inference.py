r"""Classify images with the TensorFlow raw-op MobileNetV2 graph.

  bazel run //tools:tf_inference -- -i IMAGE [-i IMAGE ...] \
      [--weights=auto|imagenet|bundled|random|PATH] [--labels=FILE] \
      [--top_k=5] [--input_mean=M] [--input_std=S] [--input_size=N]

--weights=auto uses the ImageNet weights when they are in the Keras cache or
can be downloaded, else the bundled MNIST model, and says which in one line.
Pixels are scaled as the model was trained ([-1, 1] for every model here)
unless --input_mean / --input_std are given: then the input is
(pixel - mean) / std on 0..255 pixels (a missing one defaults to mean 0 or
std 1), as in TensorFlow's label_image example.

Class names come from --labels, else from the weights (our checkpoints carry
them); a Keras .h5 with 1000 or 1001 outputs is read with the ImageNet names
(1001: a leading background class), any other count prints indices. The
input size of a Keras .h5 is --input_size, else the official Keras file
name's, else 224. Whatever was assumed is said in one `note:` line.
"""

from mobilenet.core import cli  # first: quiets TensorFlow's start-up logs

from absl import flags  # pylint: disable=g-bad-import-order

from mobilenet.core import labels as labels_lib  # pylint: disable=g-bad-import-order
from mobilenet.core import preprocess

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("image", None, "Image file (repeatable).",
                          short_name="i")
cli.define_model_flags()
flags.DEFINE_integer("top_k", 5, "Labels printed per image.")
flags.DEFINE_float("input_mean", None, "Subtract from 0..255 pixels.")
flags.DEFINE_float("input_std", None, "Divide 0..255 pixels (after the "
                   "mean) by this.")


def normalization_args(source):
  if FLAGS.input_mean is None and FLAGS.input_std is None:
    return {"mode": source.normalization}
  std = 1.0 if FLAGS.input_std is None else FLAGS.input_std
  if std == 0:
    raise cli.UsageError("--input_std must be non-zero.")
  mean = 0.0 if FLAGS.input_mean is None else FLAGS.input_mean
  return {"mode": "mean_std", "mean": mean, "std": std}


def classify(paths, source, top_k):
  """[(path, [(index, label, score), ...])] for every image."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mobilenet.core import forward  # pylint: disable=g-import-not-at-top
  images = np.stack([preprocess.load_image(p, size=source.input_size,
                                           channels=source.channels)
                     for p in paths])
  batch = preprocess.normalize(images, **normalization_args(source))
  model = forward.build(source.params, alpha=source.alpha,
                        input_shape=source.input_shape, batch_size=None,
                        classes=source.classes)
  probs = model(batch).numpy()
  return list(zip(paths, labels_lib.decode_predictions(probs, source.labels,
                                                       top_k)))


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments {argv[1:]}; pass images with "
                         "-i.")
  if not FLAGS.image:
    raise cli.UsageError("no image given; pass one or more with -i IMAGE.")
  if FLAGS.top_k < 1:
    raise cli.UsageError(f"--top_k must be at least 1, got {FLAGS.top_k}.")
  paths = [cli.user_path(p) for p in FLAGS.image]
  for p in paths:  # fail on a bad file before any model work
    preprocess.load_image(p)
  source = cli.model_source()
  normalization_args(source)
  for path, top in classify(paths, source, FLAGS.top_k):
    print(path)
    for _, name, score in top:
      print(f"  {name}  {score:.5f}")
  return 0


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
