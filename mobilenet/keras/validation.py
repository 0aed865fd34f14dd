"""Honest validation: the accuracy the exported model would have now.

The export re-estimates the BatchNorm moving statistics over
--bn_reestimate_batches unaugmented training batches (and takes the EMA
weights with --ema), so every epoch's validation does the same on a copy of
the statistics: a printed val_accuracy is what the file would score at that
point.  Training itself never reads the moving statistics, so this changes
nothing about the run; measured cost at the defaults (100 batches) is in
the README.
"""

import numpy as np

from mobilenet.keras import layers as layers_lib
from mobilenet.keras import model as model_lib
from mobilenet.keras import qat_layers
from mobilenet.keras import recipe
from mobilenet.keras import steps as steps_lib
from mobilenet.keras.train_config import TrainError


def evaluate(trainer, pipeline, reestimate=False):
  """(loss, accuracy) of trainer.model on `pipeline` as it would be exported
  now: EMA weights with --ema; with `reestimate`, BN statistics (and QAT
  ranges) re-estimated first and then put back (the checkpoint keeps
  training's own averages)."""
  total = np.zeros(3)
  # Re-estimation runs the model in training mode: with QAT the activation
  # ranges follow those batches too, and go back with the statistics.
  stats = [v for l in model_lib.batch_norm_layers(trainer.model)
           for v in (l.moving_mean, l.moving_variance)] + [
               l.range for l in trainer.model.layers
               if isinstance(l, qat_layers.ActivationQuant)]
  kept = [v.numpy() for v in stats] if reestimate else []
  with recipe.ema_weights(trainer.optimizer, trainer.cfg.ema):
    if reestimate:
      reestimate_bn(trainer)
    for batch in trainer.batches(pipeline.dataset(trainer.cfg.batch_size),
                                 pipeline):
      total += trainer.steps.evaluate(batch).numpy()
  for v, value in zip(stats, kept):
    v.assign(value)
  if not total[2]:
    raise TrainError("no readable validation images.")
  return float(total[0] / total[2]), float(total[1] / total[2])


def describe(trainer):
  """What an epoch's validation numbers are, in one line (TensorBoard)."""
  cfg = trainer.cfg
  ema = " with the EMA weights" if cfg.ema else ""
  if trainer._reestimates():  # pylint: disable=protected-access
    return (f"the model as exported{ema}: BatchNorm statistics re-estimated "
            f"over {cfg.bn_reestimate_batches} unaugmented training batches")
  return f"the model{ema} with the BatchNorm statistics training keeps"


def reestimate_bn(trainer):
  """Moving statistics of every learning BatchNorm := mean of its batch
  statistics over training batches (frozen ones and the weights are not
  touched); returns the number of batches."""
  cfg = trainer.cfg
  bns = model_lib.batch_norm_layers(trainer.model)
  trainer.bn_count.assign(0.0)
  layers_lib.start_reestimation(bns, trainer.bn_count)
  try:
    # Statistics of the images validation and users feed: unaugmented.
    ds = trainer.train_data.dataset(cfg.batch_size,
                                    shuffle_seed=cfg.seed + 10_000,
                                    augment=False)
    ds = ds.take(cfg.bn_reestimate_batches)
    if trainer.reestimate_step is None:
      # Traced once while the count is attached (the layers read it at
      # trace time); the training steps keep their own trace.
      trainer.reestimate_step = steps_lib.build(
          trainer.model, trainer.optimizer, trainer.strategy,
          cfg.batch_size, trainer.spec, trainer).bn_statistics
    for batch in trainer.batches(ds, trainer.train_data):
      trainer.reestimate_step(batch)
  finally:
    layers_lib.stop_reestimation(bns)
  return int(trainer.bn_count.numpy())
