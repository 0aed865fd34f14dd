"""The architecture a run trains, and the weights it starts from.

With --init_weights the weights decide: alpha comes from their shapes,
channels from Conv1, the input size from our sidecar or the official Keras
file name (else model_source's default, said in a note) — for every one of
these the user did not set.  A set --alpha the weights contradict is a
one-line error naming the weights' alpha; a set --channels is adapted to
(finetune.py); a set --input_size is used (any size fits the weights).
Without --init_weights the train defaults (DEFAULTS) fill what is unset.
TensorFlow-free: `train` resolves this before TensorFlow loads.
"""

import dataclasses

from mobilenet.core import model_source
from mobilenet.keras.train_config import TrainError

# train's architecture when neither a flag nor --init_weights says.
DEFAULTS = {"alpha": 0.35, "input_size": 64, "channels": 3}


def _defaults(cfg):
  return dataclasses.replace(cfg, **{
      k: v for k, v in DEFAULTS.items() if getattr(cfg, k) is None})


def resolve(cfg):
  """(cfg with alpha, input_size and channels set; the ModelSource of
  --init_weights or None; `note:` lines for values assumed, not read)."""
  if not cfg.init_weights:
    return _defaults(cfg), None, []
  spec = model_source.user_spec(cfg.init_weights)
  if spec == "random":  # untrained weights say nothing: train's defaults
    cfg = _defaults(cfg)
  try:
    source = model_source.resolve(spec, alpha=cfg.alpha,
                                  input_size=cfg.input_size,
                                  channels=cfg.channels)
  except ValueError as e:
    raise TrainError(f"--init_weights: {e}") from None
  notes = [n for n in source.notes if not n.startswith("labels:")]
  cfg = dataclasses.replace(
      cfg, alpha=source.alpha, input_size=source.input_size,
      channels=source.channels if cfg.channels is None else cfg.channels)
  return cfg, source, notes
