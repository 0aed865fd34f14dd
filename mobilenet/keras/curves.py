"""The training-curve PNG: loss and accuracy per epoch, train and validation."""

import os


def save_curve(history, path, final_accuracy=None):
  """Plots `history` (the run's per-epoch entries) to `path` atomically; a
  star marks the final validation accuracy when it differs in kind (after
  BN re-estimation)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  epochs = [h["epoch"] for h in history]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
  ax1.plot(epochs, [h["loss"] for h in history], "o-", label="train")
  ax1.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
  ax1.set_xlabel("epoch")
  ax1.set_ylabel("loss")
  ax1.legend()
  ax2.plot(epochs, [h["accuracy"] for h in history], "o-", label="train")
  ax2.plot(epochs, [h["val_accuracy"] for h in history], "o-",
           label="validation")
  if final_accuracy is not None:
    ax2.plot([epochs[-1]], [final_accuracy], "*", markersize=12,
             label="validation, BN re-estimated")
  ax2.set_xlabel("epoch")
  ax2.set_ylabel("accuracy")
  ax2.legend()
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=80)
  plt.close(fig)
  os.replace(tmp, path)
