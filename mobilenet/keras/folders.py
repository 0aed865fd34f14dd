"""Image folders with one sub-folder per class: listing and splitting.

No TensorFlow here, so command-line tools can check their input and fail
with one clear line before the (slow, noisy) TensorFlow import.
"""

import dataclasses
import os
from typing import List

import numpy as np

from mobilenet.core import preprocess


class DataError(ValueError):
  """The training data cannot be used; the message says why and the fix."""


@dataclasses.dataclass
class Split:
  paths: List[str]
  labels: List[int]

  def __len__(self):
    return len(self.paths)


def scan_folder(data_dir, what="--data_dir"):
  """(Split, class names) of a folder with one sub-folder per class."""
  if not data_dir:
    raise DataError(f"{what} is not set; pass a folder with one sub-folder "
                    "of images per class.")
  if not os.path.exists(data_dir):
    raise DataError(f"{what}={data_dir}: no such directory.")
  if not os.path.isdir(data_dir):
    raise DataError(f"{what}={data_dir} is a file; pass a folder with one "
                    "sub-folder of images per class.")
  classes = sorted(d for d in os.listdir(data_dir)
                   if os.path.isdir(os.path.join(data_dir, d))
                   and not d.startswith("."))
  if not classes:
    raise DataError(f"{what}={data_dir} has no class sub-folders; put each "
                    "class's images in their own sub-folder.")
  if len(classes) < 2:
    raise DataError(f"{what}={data_dir} has only one class sub-folder "
                    f"({classes[0]}); a classifier needs at least two.")
  paths, labels = [], []
  for i, name in enumerate(classes):
    found = preprocess.find_images(os.path.join(data_dir, name))
    if not found:
      raise DataError(
          f"{what}={data_dir}: class folder '{name}' has no images (expected "
          f"files ending in {', '.join(preprocess.IMAGE_EXTENSIONS[:4])}, "
          "...); add images or remove the folder.")
    paths.extend(found)
    labels.extend([i] * len(found))
  return Split(paths, labels), classes


def split_validation(split, fraction, seed):
  """Per-class deterministic split into (train, validation)."""
  if not 0.0 < fraction < 1.0:
    raise DataError(f"--val_split must be between 0 and 1, got {fraction}.")
  rng = np.random.default_rng(seed)
  labels = np.asarray(split.labels)
  train_idx, val_idx = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    rng.shuffle(idx)
    n_val = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
    val_idx.extend(idx[:n_val])
    train_idx.extend(idx[n_val:])
  pick = lambda ix: Split([split.paths[i] for i in sorted(ix)],  # pylint: disable=g-long-lambda
                          [split.labels[i] for i in sorted(ix)])
  return pick(train_idx), pick(val_idx)
