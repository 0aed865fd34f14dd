"""The epochs of a training run: the step loop, mid-epoch and epoch-end
checkpoints, the epoch's history entry, the progress bar and TensorBoard
events (tensorboard_log.py).  The Trainer's own loop, kept in its own file:
it uses the Trainer's private parts."""
# pylint: disable=protected-access

import signal
import time

import numpy as np

from mobilenet.keras import validation
from mobilenet.keras.train_config import TrainError


def train_epochs(trainer, stop):
  """Trains `trainer` (train_lib.Trainer) epoch after epoch up to --epochs;
  returns True when a signal (`stop`) interrupted it after a checkpoint."""
  cfg = trainer.cfg
  steps = trainer.train_data.steps(cfg.batch_size)
  while int(trainer.epoch.numpy()) < cfg.epochs:
    epoch = int(trainer.epoch.numpy())
    trainer._set_phase(epoch)
    skip = int(trainer.step_in_epoch.numpy())
    if trainer.finalized.numpy():  # more --epochs after a finished run
      trainer.finalized.assign(False)
    ds, train_step = trainer.epoch_stream(epoch, skip)
    trainer.log(f"epoch {epoch + 1}/{cfg.epochs}")
    bar = trainer._progbar(steps)
    totals = np.array(trainer.state.partial or [0.0, 0.0, 0.0])
    resumed_count, start, inputs = totals[2], time.time(), None
    for batch in trainer.batches(ds, trainer.train_data):
      sums = train_step(batch).numpy()
      totals += sums
      if trainer.tensorboard:
        trainer.tensorboard.step(int(trainer.step.numpy()), sums)
        if inputs is None:
          inputs = trainer.strategy.experimental_local_results(batch[0])[0]
          trainer.tensorboard.inputs(epoch + 1, inputs)
      if bar:
        bar.update(int(trainer.step_in_epoch.numpy()),
                   [("loss", totals[0] / max(totals[2], 1)),
                    ("accuracy", totals[1] / max(totals[2], 1))])
      every = cfg.checkpoint_every_steps
      if (stop.signum is None and every and int(trainer.step.numpy()) %
          every == 0 and int(trainer.step_in_epoch.numpy()) < steps):
        trainer.state.partial = totals.tolist()
        trainer.save()
      if stop.signum is not None:
        trainer.state.partial = totals.tolist()
        trainer.save()
        trainer.log(f"interrupted by signal {stop.signum} at step "
                 f"{int(trainer.step.numpy())}; checkpoint saved in "
                 f"{cfg.checkpoint_dir}, rerun the same command to resume.")
        return True
    if not totals[2]:
      raise TrainError("no readable training images in the stream; "
                       + trainer.skipped.summary())
    train_seconds = time.time() - start
    if len(trainer.skipped) > trainer._skips_reported:
      trainer._skips_reported = len(trainer.skipped)
      trainer.log("warning: " + trainer.skipped.summary())
    val_loss, val_acc = trainer.evaluate(reestimate=trainer._reestimates())
    entry = {"epoch": epoch + 1, "step": int(trainer.step.numpy()),
             "loss": float(totals[0] / totals[2]),
             "accuracy": float(totals[1] / totals[2]),
             "val_loss": float(val_loss), "val_accuracy": float(val_acc),
             "seconds": round(time.time() - start, 1),
             "images_per_second": round(
                 (totals[2] - resumed_count) / max(train_seconds, 1e-6), 1)}
    trainer.history.append(entry)
    if trainer.tensorboard:
      trainer.tensorboard.epoch(entry, validation.describe(trainer))
    trainer.log(f"epoch {epoch + 1}: loss {entry['loss']:.4f} accuracy "
             f"{entry['accuracy']:.4f} val_loss {val_loss:.4f} "
             f"val_accuracy {val_acc:.4f} ({entry['seconds']:.0f} s)")
    trainer.epoch.assign_add(1)
    trainer.step_in_epoch.assign(0)
    trainer.state.partial = None
    trainer.save()
    if (trainer.stop_after_epoch is not None and
        epoch + 1 >= trainer.stop_after_epoch):
      stop.signum = signal.SIGTERM
    if stop.signum is not None:
      trainer.log(f"interrupted by signal {stop.signum} after epoch "
               f"{epoch + 1}; checkpoint saved in {cfg.checkpoint_dir}, "
               "rerun the same command to resume.")
      return True
  return False
