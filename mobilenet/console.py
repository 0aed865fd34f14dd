"""Console scripts of the installed wheel (see the root BUILD's //:wheel).

    mobilenet-convert        mobilenet/tflite/convert.py   (bazel run //:tflite_converter)
    mobilenet-infer          mobilenet/tflite/infer.py     (bazel run //:tflite_inference)
    mobilenet-train          mobilenet/keras/train.py      (bazel run //:train)
    mobilenet-tf-inference   tools/tf_inference.py         (bazel run //:tf_inference)
    mobilenet-evaluate       tools/evaluate.py             (bazel run //tools:evaluate)

Each function imports only its own tool, when called: the tools define absl
flags at import, and two of them in one process would clash.  In the wheel,
tools/ modules live under mobilenet/tools/.
"""

import importlib


def _cli(module):
  # cli first: it quiets TensorFlow's C++ start-up logs before TF loads.
  from mobilenet.core import cli  # pylint: disable=g-import-not-at-top
  cli.run(importlib.import_module(module).main)


def convert():
  _cli("mobilenet.tflite.convert")


def infer():
  _cli("mobilenet.tflite.infer")


def train():
  importlib.import_module("mobilenet.keras.train").run()


def tf_inference():
  importlib.import_module("mobilenet.tools.tf_inference").run()


def evaluate():
  importlib.import_module("mobilenet.tools.evaluate").run()
