"""Class-name files and top-k decoding of classifier outputs.

Label files hold one class name per line, index = line number.  Some models
(TF-slim, many TFLite classifiers) have 1001 outputs with a "background"
class at index 0 while the names file has 1000 lines, or the other way
round; `align` reconciles the two instead of silently shifting every name.
"""

import os

import numpy as np

IMAGENET_LABELS = "imagenet_labels.txt"
MNIST_LABELS = "mnist_labels.txt"

# Names that mark a leading "no object" class rather than a real one.
BACKGROUND_NAMES = ("background", "__background__", "unused", "???", "none")
BACKGROUND = "background"


class LabelError(ValueError):
  """A labels file or list does not fit the model; message says how."""


def data_path(name):
  """Path of a file in the project's data directory.

  In an installed wheel that is the package data mobilenet/data/; in the
  source tree and in Bazel runfiles (also when this repository is an external
  dependency) the repository's data/, at the same place relative to this file.
  """
  here = os.path.dirname(os.path.abspath(__file__))
  root = os.path.join(here, "..", "data")  # installed wheel
  if not os.path.isdir(root):
    root = os.path.join(here, "..", "..", "data")  # repository / runfiles
  return os.path.normpath(os.path.join(root, name))


def load_labels(path):
  """Reads a one-name-per-line file.

  Trailing blank lines are dropped; a blank line in the middle is an error
  because it would shift every later index by one.
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8-sig") as f:
      lines = [line.strip() for line in f.read().splitlines()]
  except FileNotFoundError:
    raise LabelError(f"{path}: no such labels file") from None
  except UnicodeDecodeError as e:
    raise LabelError(f"{path}: not a UTF-8 text file ({e.reason})") from None
  except OSError as e:
    raise LabelError(f"{path}: cannot read labels file ({e})") from None
  while lines and not lines[-1]:
    lines.pop()
  if not lines:
    raise LabelError(f"{path}: labels file is empty")
  if "" in lines:
    raise LabelError(f"{path}: blank line {lines.index('') + 1} would shift "
                     "every later label; remove it")
  return lines


def imagenet_labels():
  """The 1000 ImageNet class names in Keras' `decode_predictions` order."""
  return load_labels(data_path(IMAGENET_LABELS))


def mnist_labels():
  """The ten digit names "0".."9"."""
  return load_labels(data_path(MNIST_LABELS))


def default_names(num_outputs):
  """(names, note) for a model that carries no names of its own: the
  ImageNet names for 1000 outputs (1001: after a background class), else the
  output indices; `note` says what was assumed, in one line."""
  if num_outputs in (1000, 1001):
    which = ("background + the ImageNet names" if num_outputs == 1001 else
             "the ImageNet names")
    return (align(imagenet_labels(), num_outputs),
            f"labels: {which} (assumed for {num_outputs} outputs; pass "
            "--labels FILE)")
  return ([str(i) for i in range(num_outputs)],
          f"labels: class indices 0..{num_outputs - 1} (the weights carry no "
          "names; pass --labels FILE)")


def _is_background(name):
  return name.strip().lower() in BACKGROUND_NAMES


def align(labels, num_outputs):
  """Matches a label list to a model's number of outputs.

  Args:
    labels: class names, index = model output index when lengths agree.
    num_outputs: size of the model's last dimension.

  Returns:
    A list of exactly `num_outputs` names: unchanged when the lengths
    agree; without its leading background entry when there is one name too
    many; with "background" prepended when there is one name too few (the
    model's extra output 0 is the background class).

  Raises:
    LabelError: any other mismatch, or one name too many whose first entry
      is not a background class.
  """
  labels = list(labels)
  n = len(labels)
  if num_outputs < 1:
    raise LabelError(f"model must have at least one output, got {num_outputs}")
  if n == num_outputs:
    return labels
  if n == num_outputs + 1:
    if _is_background(labels[0]):
      return labels[1:]
    raise LabelError(
        f"{n} labels for {num_outputs} model outputs: one extra label, but "
        f"the first is {labels[0]!r}, not a background class; use the labels "
        "file that belongs to this model")
  if n == num_outputs - 1:
    return [BACKGROUND] + labels
  raise LabelError(f"{n} labels for {num_outputs} model outputs; use the "
                   "labels file that belongs to this model")


def decode_predictions(probs, labels, top_k=5):
  """Top-k classes of one prediction vector or a batch of them.

  Args:
    probs: scores of shape (num_outputs,) or (batch, num_outputs);
      probabilities or logits, only the order matters.
    labels: class names; passed through `align` first.
    top_k: how many classes to return (capped at num_outputs).

  Returns:
    For a vector, a list of `(index, name, score)` tuples, best first (equal
    scores: lower index first); for a batch, one such list per row.
  """
  probs = np.asarray(probs)
  if probs.ndim not in (1, 2) or probs.shape[-1] == 0:
    raise ValueError("decode_predictions expects scores of shape (num_outputs,)"
                     f" or (batch, num_outputs), got {probs.shape}")
  if int(top_k) < 1:
    raise ValueError(f"top_k must be at least 1, got {top_k}")
  names = align(labels, probs.shape[-1])
  k = min(int(top_k), probs.shape[-1])

  def one(row):
    order = np.argsort(-row.astype(np.float64), kind="stable")[:k]
    return [(int(i), names[i], float(row[i])) for i in order]

  if probs.ndim == 1:
    return one(probs)
  return [one(row) for row in probs]
