"""Test helper: a random MobileNetV2 whose activations stay alive.

Keras-style random init with unit BN statistics shrinks activations layer by
layer until the logits are ~1e-11, which makes any quantization comparison
meaningless.  Setting each BN's moving statistics to the batch statistics of
real digits (one training-mode pass) gives unit-scale activations, like a
trained net.
"""

import dataclasses

import numpy as np

from mobilenet.core import forward
from mobilenet.core import model_source
from mobilenet.core import ops
from mobilenet.core import params as params_lib
from mobilenet.core import preprocess
from mobilenet.tflite import converter


def live_random_source(alpha=0.35, input_size=32, channels=1, classes=10,
                       num_images=32):
  source = model_source.resolve("random", alpha=alpha, input_size=input_size,
                                channels=channels, classes=classes)
  paths = preprocess.find_images(converter.default_calibration_dir())
  images = preprocess.load_images(paths[-num_images:], input_size,
                                  channels=channels)
  zeroed = {k: dict(v) for k, v in source.params.items()}
  for v in zeroed.values():
    if "moving_mean" in v:
      v["moving_mean"] = np.zeros_like(v["moving_mean"])
      v["moving_variance"] = np.zeros_like(v["moving_variance"])
  _, stats = forward.forward(zeroed, images, alpha=alpha, training=True)
  # Moving stats started at 0, so new = batch * (1 - momentum).
  batch = {name: {k: np.asarray(t) / (1.0 - ops.BN_MOMENTUM)
                  for k, t in s.items()} for name, s in stats.items()}
  params = params_lib.with_bn_stats(source.params, batch)
  return dataclasses.replace(source, params=params,
                             description=source.description + " (BN stats "
                             "from digits)")
