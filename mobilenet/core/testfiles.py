"""Test helper: weight files shaped like the ones users bring.

`digit_model_1001` turns the bundled digit model into a 1001-output Keras
weight file (output 0 a background class, outputs 1..10 the digits, the rest
never winning) with no sidecar, the way a TF-slim-style fine-tuned model
arrives: nothing but weights and a labels file beside it.
"""

import os

import numpy as np

from mobilenet.core import arch
from mobilenet.core import model_source
from mobilenet.core import params as params_lib

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
