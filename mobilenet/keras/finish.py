"""The end of a training run: final evaluation, BN re-estimation, export."""

import os

from mobilenet.keras import curves
from mobilenet.keras import export as export_lib
from mobilenet.keras import recipe


def finish(trainer):
  """Ends a run whose epochs are done: the final evaluation (before and after
  BN re-estimation), the EMA weights if any, the last checkpoint, and on the
  chief the export and the training curve; returns the train_lib.Result."""
  cfg = trainer.cfg
  trainer._set_phase(int(trainer.epoch.numpy()))
  _, before = trainer.evaluate()
  after = before
  # The exported weights: with --ema the averaged ones, whose BN
  # statistics are then re-estimated like any.
  recipe.finalize_ema(trainer.optimizer, cfg.ema)
  if trainer._reestimates():
    n = trainer.reestimate_bn()
    _, after = trainer.evaluate()
    trainer.log(f"validation accuracy {before:.4f} with the moving BN "
             f"statistics from training, {after:.4f} after re-estimating "
             f"them over {n} training batches")
  trainer.log(f"final val_accuracy {after:.4f}")
  if trainer.tensorboard:
    trainer.tensorboard.final(int(trainer.epoch.numpy()), before, after,
                              "the exported model")
  trainer.state.accuracy_before_bn_reestimate = before
  trainer.state.accuracy = after
  trainer.state.bn_reestimated = bool(cfg.bn_reestimate)
  trainer.finalized.assign(True)
  trainer.save()
  if not trainer.worker.chief:
    return trainer._result(True)
  export = _export(trainer)
  curve = os.path.join(cfg.checkpoint_dir, "training_curve.png")
  if trainer.history:
    curves.save_curve(trainer.history, curve,
               after if cfg.bn_reestimate else None)
    trainer.log(f"training curve: {curve}")
  result = trainer._result(True)
  result.export_path, result.curve_path = export, curve
  return result


def _export(trainer):
  cfg = trainer.cfg
  path = export_lib.export_model(
      trainer.model, cfg.export_path or os.path.join(cfg.checkpoint_dir,
                                                  "model.h5"),
      cfg, trainer.class_names, trainer.state)
  trainer.log(f"exported {path} (+ {os.path.basename(path)[:-3]}.json)")
  if cfg.qat:
    _export_int8(trainer, path)
  return path


def _export_int8(trainer, path):
  """The QAT model as int8 .tflite beside the .h5: <stem>_int8.tflite."""
  from mobilenet.core import model_source  # pylint: disable=g-import-not-at-top
  from mobilenet.tflite import converter  # pylint: disable=g-import-not-at-top
  from mobilenet.tflite import qat_export  # pylint: disable=g-import-not-at-top
  stem = os.path.splitext(os.path.basename(path))[0]
  converted = qat_export.convert_source(model_source.resolve(path),
                                        name=stem + "_int8")
  converter.save(converted, os.path.dirname(os.path.abspath(path)))
  trainer.log(f"exported {stem}_int8.tflite (int8 from the QAT ranges, "
              f"{trainer.cfg.granularity} weights)")
