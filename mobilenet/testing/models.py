"""Models for tests, shaped like the ones users bring.

`live_random_source`: Keras-style random init with unit BN statistics shrinks
activations layer by layer until the logits are ~1e-11, which makes any
quantization comparison meaningless; setting each BN's moving statistics to
the batch statistics of real digits (one training-mode pass) gives unit-scale
activations, like a trained net.  BN's gamma/beta and the classifier bias are
drawn too (seeded): left at the init's 1/0, many folded biases are all zero
and the converter shares identical constants, so the .tflite and TFLM's arena
come out smaller than a trained model's of the same shape (equal to the byte
once drawn; //tools:micro_fit measures with these models).

`digit_model_1001` turns the bundled digit model into a 1001-output Keras
weight file (output 0 a background class, outputs 1..10 the digits, the rest
never winning) with no sidecar, the way a TF-slim-style fine-tuned model
arrives: nothing but weights and a labels file beside it.
"""

import dataclasses
import os

import numpy as np

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import model_source
from mobilenet.core import ops
from mobilenet.core import params as params_lib
from mobilenet.core import preprocess
from mobilenet.tflite import converter


def live_random_source(alpha=0.35, input_size=32, channels=1, classes=10,
                       num_images=32, seed=0):
  source = model_source.resolve("random", alpha=alpha, input_size=input_size,
                                channels=channels, classes=classes)
  rng = np.random.default_rng(seed)
  paths = preprocess.find_images(converter.default_calibration_dir())
  images = preprocess.load_images(paths[-num_images:], input_size,
                                  channels=channels)
  drawn = {}
  for name in sorted(source.params):
    layer = drawn[name] = dict(source.params[name])
    if "gamma" in layer:
      layer["gamma"] = rng.uniform(0.5, 1.5, layer["gamma"].shape)
      layer["beta"] = rng.normal(0.0, 0.5, layer["beta"].shape)
    elif name == "predictions":
      layer["bias"] = rng.normal(0.0, 0.1, layer["bias"].shape)
    for k, v in layer.items():
      layer[k] = np.asarray(v, np.float32)
  zeroed = {k: dict(v) for k, v in drawn.items()}
  for v in zeroed.values():
    if "moving_mean" in v:
      v["moving_mean"] = np.zeros_like(v["moving_mean"])
      v["moving_variance"] = np.zeros_like(v["moving_variance"])
  _, stats = forward.forward(zeroed, images, alpha=alpha, training=True)
  # Moving stats started at 0, so new = batch * (1 - momentum).
  batch = {name: {k: np.asarray(t) / (1.0 - ops.BN_MOMENTUM)
                  for k, t in s.items()} for name, s in stats.items()}
  params = params_lib.with_bn_stats(drawn, batch)
  return dataclasses.replace(source, params=params,
                             description=source.description + " (BN stats "
                             "from digits)")


def live_random_int8(alpha=0.35, input_size=32, channels=1, classes=10):
  """`live_random_source` converted to full-integer int8 on 8 calibration
  digits (converter.Converted): the int8 tests' random model."""
  return converter.convert_source(
      live_random_source(alpha, input_size, channels, classes), "int8",
      num_calibration=8)


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven",
               "eight", "nine")


def digit_model_1001(directory, name="mnv2_finetuned_1001.h5"):
  """(weights path, labels path with a leading background line)."""
  bundled = model_source.resolve("bundled")
  params = {k: dict(v) for k, v in bundled.params.items()}
  kernel = np.asarray(params["predictions"]["kernel"])
  bias = np.asarray(params["predictions"]["bias"])
  wide_kernel = np.zeros((kernel.shape[0], 1001), np.float32)
  wide_bias = np.full((1001,), -30.0, np.float32)
  wide_kernel[:, 1:11], wide_bias[1:11] = kernel, bias
  params["predictions"] = {"kernel": wide_kernel, "bias": wide_bias}
  net = arch.derive(bundled.alpha, bundled.channels, 1001)
  path = os.path.join(directory, name)
  params_lib.save_h5(params, path, net)
  labels = os.path.join(directory, "labels_1001.txt")
  names = ["background"] + list(DIGIT_NAMES) + [
      f"unused_{i}" for i in range(11, 1001)]
  with open(labels, "w", encoding="utf8") as f:
    f.write("\n".join(names) + "\n")
  return path, labels


def write_initial_params(path, alpha, channels, classes, seed=0):
  """Keras-style initial weights written to `path` (a Keras-layout .h5 to
  pass as --init_weights), so a test knows the exact start of a training
  run; returns them as read back from the file."""
  net = arch.derive(alpha, channels, classes)
  params_lib.save_h5(params_lib.init(net, seed=seed), path, net)
  return model_source.resolve(path).params
