"""Training configuration and the input checks that need no TensorFlow
(so the CLI reports bad input in one line before importing it)."""

import dataclasses
from typing import Optional

from mobilenet.core import arch
from mobilenet.keras import folders

OPTIMIZERS = ("rmsprop", "adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored", "multiworker")


class TrainError(ValueError):
  """Bad configuration or data; one-line message naming the fix."""


@dataclasses.dataclass
class Config:
  data_dir: Optional[str] = None
  val_dir: Optional[str] = None
  val_split: float = 0.1
  dataset: str = "folder"  # or "mnist"
  alpha: float = 0.35
  input_size: int = 64
  channels: int = 3
  classes: Optional[int] = None
  epochs: int = 2
  batch_size: int = 32
  learning_rate: float = 5e-4
  lr_schedule: str = "constant"  # or "cosine" (decays to 0 over all steps)
  optimizer: str = "rmsprop"
  checkpoint_dir: str = "mobilenet_v2_train"
  export_path: Optional[str] = None  # default <checkpoint_dir>/model.h5
  strategy: str = "default"
  bn_momentum: float = arch.BN_MOMENTUM
  bn_reestimate: bool = True
  bn_reestimate_batches: int = 100
  seed: int = 0
  command: str = ""  # recorded in the export's sidecar
  verbose: int = 1   # 0 quiet, 1 progress bar, 2 one line per epoch


def validate(cfg: Config):
  try:
    arch.validate_alpha(cfg.alpha)
    arch.validate_input_size(cfg.input_size, cfg.input_size)
    arch.validate_channels(cfg.channels)
  except ValueError as e:
    raise TrainError(str(e)) from None
  for name in ("epochs", "batch_size", "bn_reestimate_batches"):
    if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
      raise TrainError(f"--{name} must be a positive integer, got "
                       f"{getattr(cfg, name)!r}.")
  if not cfg.learning_rate > 0:
    raise TrainError(f"--learning_rate must be positive, got "
                     f"{cfg.learning_rate}.")
  if not 0.0 <= cfg.bn_momentum < 1.0:
    raise TrainError(f"--bn_momentum must be in [0, 1), got "
                     f"{cfg.bn_momentum}.")
  if cfg.optimizer not in OPTIMIZERS:
    raise TrainError(f"--optimizer must be one of {OPTIMIZERS}, got "
                     f"{cfg.optimizer!r}.")
  if cfg.lr_schedule not in LR_SCHEDULES:
    raise TrainError(f"--lr_schedule must be one of {LR_SCHEDULES}, got "
                     f"{cfg.lr_schedule!r}.")
  if cfg.strategy not in STRATEGIES:
    raise TrainError(f"--strategy must be one of {STRATEGIES}, got "
                     f"{cfg.strategy!r}.")
  if cfg.dataset not in ("folder", "mnist"):
    raise TrainError(f"--dataset must be 'folder' or 'mnist', got "
                     f"{cfg.dataset!r}.")


def check_classes(cfg, names):
  if cfg.classes is not None and cfg.classes != len(names):
    raise TrainError(f"--classes={cfg.classes} but the data has {len(names)} "
                     f"classes ({', '.join(names[:5])}...); drop --classes.")


def scan(cfg):
  """(train split, validation split, class names) of an image-folder run."""
  try:
    split, names = folders.scan_folder(cfg.data_dir)
    if cfg.val_dir:
      val_split, val_names = folders.scan_folder(cfg.val_dir, "--val_dir")
      if val_names != names:
        raise TrainError(
            f"--val_dir classes {val_names} differ from --data_dir classes "
            f"{names}; both need the same class sub-folders.")
    else:
      split, val_split = folders.split_validation(split, cfg.val_split,
                                                  cfg.seed)
      if not len(val_split):
        raise TrainError("--val_split left no validation images; add "
                         "images or pass --val_dir.")
  except folders.DataError as e:
    raise TrainError(str(e)) from None
  check_classes(cfg, names)
  return split, val_split, names
