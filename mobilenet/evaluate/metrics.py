"""Scores of one model's predictions against the data's labels, and the
agreement between models.

The data's classes are matched to a model's outputs by name (a model may
have more classes than the data, e.g. 1000 ImageNet outputs on a 2-class
folder); the confusion matrix has one row per data class and one column per
data class plus "other" for predictions outside the data's classes, so it
always sums to the number of images scored.
"""

import numpy as np

OTHER = "(other)"
TOP_K = 5


class LabelMismatchError(ValueError):
  """The data has classes the model does not know."""


def class_map(data_classes, model_labels, model_name):
  """Model output index of every data class (by name)."""
  index = {name: i for i, name in enumerate(model_labels)}
  unknown = [c for c in data_classes if c not in index]
  if unknown:
    shown = ", ".join(repr(c) for c in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    raise LabelMismatchError(
        f"the data's classes {shown}{more} are not among the labels of "
        f"{model_name} ({', '.join(model_labels[:5])}, ...); pass --labels "
        "FILE with the model's class names, or data whose class folders / "
        "sidecar names match them.")
  return np.asarray([index[c] for c in data_classes], np.int64)


def score(probs, truth, mapping, data_classes):
  """Dict of top-1/top-k accuracy, per-class precision/recall and the
  confusion matrix for `probs` (n, model classes) and data labels `truth`."""
  probs = np.asarray(probs)
  truth = np.asarray(truth, np.int64)
  n, classes = probs.shape
  k = min(TOP_K, classes)
  target = mapping[truth]
  top = np.argsort(-probs.astype(np.float64), axis=1, kind="stable")[:, :k]
  predicted = top[:, 0]
  to_data = np.full(classes, len(data_classes), np.int64)  # "other"
  to_data[mapping] = np.arange(len(data_classes))
  confusion = np.zeros((len(data_classes), len(data_classes) + 1), np.int64)
  np.add.at(confusion, (truth, to_data[predicted]), 1)
  tp = np.diag(confusion[:, :len(data_classes)])
  predicted_as = confusion[:, :len(data_classes)].sum(0)
  actual = confusion.sum(1)
  with np.errstate(invalid="ignore", divide="ignore"):
    precision = np.where(predicted_as > 0, tp / predicted_as, np.nan)
    recall = np.where(actual > 0, tp / actual, np.nan)
  return {
      "images": int(n),
      "top1": float(np.mean(predicted == target)) if n else float("nan"),
      "top1_correct": int(np.sum(predicted == target)),
      "top_k": k,
      "topk": float(np.mean((top == target[:, None]).any(1))) if n else
              float("nan"),
      "precision": [None if np.isnan(v) else float(v) for v in precision],
      "recall": [None if np.isnan(v) else float(v) for v in recall],
      "confusion": confusion.tolist(),
      "confusion_columns": list(data_classes) + [OTHER],
  }


def agreement(predicted_names):
  """Pairwise top-1 agreement, [i][j] the fraction of images on which model
  i and model j name the same class."""
  names = [np.asarray(p) for p in predicted_names]
  return [[float(np.mean(a == b)) if len(a) else float("nan") for b in names]
          for a in names]
