"""Keras front end of the core MobileNetV2: `from mobilenet.keras import MobileNetV2`.

Loaded lazily so that TensorFlow-free modules of this package (folders,
train_config) stay cheap to import: the command line checks its input and
reports errors before TensorFlow starts.
"""


def __getattr__(name):
  if name == "MobileNetV2":
    from mobilenet.keras.model import MobileNetV2  # pylint: disable=g-import-not-at-top
    return MobileNetV2
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
