"""The trained model as a file every tool reads: Keras-layout .h5 + sidecar."""

import os

from mobilenet.core import arch
from mobilenet.core import checkpoint
from mobilenet.core import params as params_lib
from mobilenet.keras import model as model_lib


def export_model(model, path, cfg, class_names, state):
  """Writes `model`'s weights to `path` and its sidecar beside it (with the
  run's provenance from `state`, a run_dir.RunState); returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  net = arch.derive(cfg.alpha, cfg.channels, len(class_names))
  params_lib.save_h5(model_lib.get_params(model), path, net)
  last = state.history[-1] if state.history else {}
  extra = {}
  if cfg.qat:  # what qat_export converts from, without calibration images
    extra["qat"] = {"granularity": cfg.granularity,
                    "ranges": model_lib.qat_ranges(model)}
  checkpoint.write_sidecar(
      checkpoint.sidecar_path(path), path, alpha=cfg.alpha,
      input_size=cfg.input_size, channels=cfg.channels, labels=class_names,
      normalization="tf", val_accuracy=state.accuracy,
      val_accuracy_before_bn_reestimate=state.accuracy_before_bn_reestimate,
      epochs=state.epoch, steps=state.step, train_loss=last.get("loss"),
      train_command=cfg.command, **extra)
  return path
