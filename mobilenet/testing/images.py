"""Tiny generated image folders for the tests: class k is a band at position k."""

import os

import numpy as np
from PIL import Image


def make_folder(root, classes=3, per_class=24, size=32, bad_files=True,
                seed=0):
  """root/c<k>/<i>.png: class k is a bright vertical band at position k on
  noise, easy enough to learn in a few steps.  With `bad_files`, class c1
  also holds a file that is not an image and an empty .png."""
  rng = np.random.default_rng(seed)
  band = size // classes
  for c in range(classes):
    d = os.path.join(root, f"c{c}")
    os.makedirs(d, exist_ok=True)
    for i in range(per_class):
      a = rng.integers(0, 70, (size, size, 3)).astype(np.uint8)
      a[:, c * band:(c + 1) * band] += 170
      Image.fromarray(a).save(os.path.join(d, f"{i:03d}.png"))
  if bad_files:
    with open(os.path.join(root, "c1", "zz_not_an_image.png"), "wb") as f:
      f.write(b"this is not a PNG")
    open(os.path.join(root, "c1", "zz_empty.png"), "wb").close()
  return root


def spread_folder(root):
  """3 classes x 8 PNGs, each image over its own span of gray levels (every
  minimum and maximum distinct), so pieces of a batch split over replicas
  or workers have different ranges.  Returns `root`."""
  rng = np.random.default_rng(0)
  lows, highs = rng.permutation(100)[:24], 150 + rng.permutation(100)[:24]
  for i in range(24):
    d = os.path.join(root, f"c{i % 3}")
    os.makedirs(d, exist_ok=True)
    a = rng.integers(lows[i], highs[i] + 1, (32, 32, 3)).astype(np.uint8)
    a[0, 0], a[0, 1] = lows[i], highs[i]
    Image.fromarray(a).save(os.path.join(d, f"{i:03d}.png"))
  return root
