"""The independent reference for what our tools print about the bundled
model: keras.applications.MobileNetV2 loading the same weight file, fed
Pillow's bilinear resize of the digits (what Keras' load_img does)."""

import keras
import numpy as np
from PIL import Image

from mobilenet.core import model_source


def bundled():
  """(the bundled ModelSource, keras.applications model with its weights)."""
  s = model_source.resolve("bundled")
  ref = keras.applications.MobileNetV2(
      input_shape=s.input_shape, alpha=s.alpha, classes=s.classes,
      weights=None)
  ref.load_weights(s.weights_path)
  return s, ref


def gray_pixels(paths, size):
  """uint8 (N, size, size): each file as Pillow's L, bilinear to size."""
  return np.stack([np.asarray(Image.open(p).convert("L").resize(
      (size, size), Image.Resampling.BILINEAR)) for p in paths])


def bundled_top1(paths):
  """The bundled model's class index per image file, by Keras."""
  s, ref = bundled()
  x = gray_pixels(paths, s.input_size).astype(np.float32)[..., None]
  return ref.predict(x / 127.5 - 1.0, batch_size=100, verbose=0).argmax(-1)
