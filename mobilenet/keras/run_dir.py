"""A training run's directory: the TensorFlow checkpoint and run.json.

run.json is the typed `RunState` below: the flags that must match to resume,
where the run is (epoch, step), the per-epoch history and the final numbers.
The tf.train.Checkpoint beside it holds the variables (model, optimizer,
step counters). Only the newest checkpoint is kept.
"""

import dataclasses
import json
import os
from typing import List, Optional

import tensorflow as tf

from mobilenet.core import checkpoint as checkpoint_lib
from mobilenet.keras.train_config import TrainError

RUN_FILE = "run.json"
# Fields of the run config that must match to resume from a directory.
RESUME_KEYS = ("alpha", "input_size", "channels", "class_names", "batch_size",
               "seed", "optimizer", "init_weights", "freeze", "head_epochs",
               "fine_tune_bn", "augment", "qat", "granularity")


_LEGACY = {"freeze": "none", "head_epochs": 0, "fine_tune_bn": "frozen",
           "augment": "none", "qat": False, "granularity": "per_channel"}


@dataclasses.dataclass
class RunState:
  config: dict = dataclasses.field(default_factory=dict)
  checkpoint: Optional[str] = None  # file prefix, relative to the directory
  step: int = 0
  epoch: int = 0
  step_in_epoch: int = 0
  history: List[dict] = dataclasses.field(default_factory=list)
  # [loss sum, correct, count] of an epoch interrupted mid-way.
  partial: Optional[List[float]] = None
  accuracy_before_bn_reestimate: Optional[float] = None
  accuracy: Optional[float] = None
  bn_reestimated: Optional[bool] = None

  @classmethod
  def from_json(cls, obj):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in obj.items() if k in names})


@dataclasses.dataclass
class Result:
  """What train_lib.Trainer.run() returns (the end of a run, or where it
  stopped)."""
  finished: bool
  step: int
  epoch: int
  history: List[dict]
  accuracy_before_bn_reestimate: Optional[float] = None
  accuracy: Optional[float] = None
  export_path: Optional[str] = None
  curve_path: Optional[str] = None
  skipped_images: int = 0


def _run_file(directory):
  return os.path.join(directory, RUN_FILE)


def check_directory(directory):
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise TrainError(f"--checkpoint_dir={directory} is a file; pass a "
                     "directory.")


def restore(directory, tf_checkpoint, run_config) -> Optional[RunState]:
  """The saved state, with the variables restored; None for a new run."""
  check_directory(directory)
  path = _run_file(directory)
  if not os.path.exists(path):
    if os.path.isdir(directory) and tf.train.latest_checkpoint(directory):
      raise TrainError(f"--checkpoint_dir={directory} holds a checkpoint "
                       f"without {RUN_FILE}; use an empty directory.")
    return None
  try:
    with open(path, encoding="utf8") as f:
      state = RunState.from_json(json.load(f))
    prefix = os.path.join(directory, state.checkpoint)
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise TrainError(f"checkpoint {path} is corrupt ({type(e).__name__}: "
                     f"{e}); delete {directory} to start over.") from None
  for k in RESUME_KEYS:
    # A run.json from before a key existed ran with its default.
    if state.config.get(k, _LEGACY.get(k)) != run_config[k]:
      raise TrainError(
          f"checkpoint in {directory} was made with {k}="
          f"{state.config.get(k)!r}, this run has {k}={run_config[k]!r}; "
          "rerun with the original flags or use another --checkpoint_dir.")
  try:
    tf_checkpoint.read(prefix).assert_existing_objects_matched()
  except Exception as e:  # pylint: disable=broad-except
    # A damaged file surfaces as OpError, ValueError, IndexError, ...
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise TrainError(f"cannot restore checkpoint {prefix}: {msg[:200]}; "
                     f"delete {directory} to start over.") from None
  return state


def save(directory, tf_checkpoint, state: RunState) -> RunState:
  """Writes ckpt-<step> and run.json, then drops the previous checkpoint."""
  os.makedirs(directory, exist_ok=True)
  old = state.checkpoint
  path = tf_checkpoint.write(os.path.join(directory, f"ckpt-{state.step}"))
  state = dataclasses.replace(state, checkpoint=os.path.basename(path))
  checkpoint_lib.write_json(_run_file(directory), dataclasses.asdict(state))
  if old and old != state.checkpoint:
    for name in os.listdir(directory):
      if name.startswith(old + "."):
        os.remove(os.path.join(directory, name))
  return state
