"""Training configuration and the input checks that need no TensorFlow
(so the CLI reports bad input in one line before importing it)."""

import dataclasses
from typing import Optional

from mobilenet.core import arch
from mobilenet.keras import folders
from mobilenet.keras import record_schema

OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
FINE_TUNE_BN = ("frozen", "train")
AUGMENTS = ("none", "digits", "photos")
# Momentum of the BN moving averages when training from scratch: 0.99 averages
# over ~100 steps, so after an epoch of a few hundred steps the statistics
# match the weights and each epoch's validation is what the exported model
# scores (Keras' 0.999 needs thousands of steps: chance-level validation).
BN_MOMENTUM = 0.99
LR_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored", "multiworker")
GRANULARITIES = ("per_channel", "per_tensor")  # as core/qat.py


class TrainError(ValueError):
  """Bad configuration or data; one-line message naming the fix."""


@dataclasses.dataclass
class Config:
  data_dir: Optional[str] = None
  val_dir: Optional[str] = None
  val_split: float = 0.1
  dataset: str = "folder"  # or "mnist"
  # Sharded TFRecords (record_schema.py) instead of folders: file patterns.
  train_files: Optional[str] = None
  val_files: Optional[str] = None
  # None: from --init_weights, else init_source.DEFAULTS (0.35, 64, 3).
  alpha: Optional[float] = None
  input_size: Optional[int] = None
  channels: Optional[int] = None
  classes: Optional[int] = None
  epochs: int = 2
  batch_size: int = 32
  # The default recipe (docs/training.md: 97.8 % from scratch on 1,000 held-out real
  # digits, alpha 0.35, 64 px, 15 epochs on 4,000): RMSprop 2e-3, 1 warmup
  # epoch, cosine decay, digits augmentation.
  learning_rate: float = 2e-3
  lr_schedule: str = "cosine"  # or "constant"; cosine decays to 0 per phase
  optimizer: str = "rmsprop"
  checkpoint_dir: str = "mobilenet_v2_train"
  export_path: Optional[str] = None  # default <checkpoint_dir>/model.h5
  strategy: str = "default"
  checkpoint_every_steps: int = 0  # 0: at epoch ends (and on signals) only
  bn_momentum: float = BN_MOMENTUM
  bn_reestimate: bool = True
  bn_reestimate_batches: int = 100
  seed: int = 0
  # Fine-tuning (finetune.py): a --weights spec, what to freeze, two phases.
  init_weights: Optional[str] = None
  freeze: str = "none"  # none | backbone | <Keras layer name>
  head_epochs: int = 0
  fine_tune_learning_rate: Optional[float] = None  # default learning_rate/10
  fine_tune_bn: str = "frozen"  # or "train"; only with init_weights
  # Recipe (recipe.py) and augmentation (augment.py).
  augment: str = "digits"
  warmup_epochs: float = 1.0
  label_smoothing: float = 0.0
  weight_decay: float = 0.0
  ema: float = 0.0  # EMA momentum of the weights for eval/export; 0 = off
  # TensorBoard event files under <checkpoint_dir>/tensorboard (chief only).
  tensorboard: bool = True
  tensorboard_every_steps: int = 10
  # Head phase: train the head on the backbone's pooled features, computed
  # once (feature_cache.py), when nothing before the head learns and the
  # training images are not augmented.
  feature_cache: bool = True
  # Quantization-aware training (core/qat.py): fake-quantized weights of
  # this granularity and learned activation ranges; the export gets an int8
  # .tflite converted from them (mobilenet/tflite/qat_export.py).
  qat: bool = False
  granularity: str = "per_channel"
  # TFLite's BN freeze: after this many steps the folded BNs use (and keep)
  # their moving statistics; 0 = never.
  qat_freeze_bn_after_steps: int = 0
  command: str = ""  # recorded in the export's sidecar
  verbose: int = 1   # 0 quiet, 1 progress bar, 2 one line per epoch


def validate(cfg: Config):
  try:  # unset ones come from the weights (init_source.resolve)
    if cfg.alpha is not None:
      arch.validate_alpha(cfg.alpha)
    arch.validate_input_size(cfg.input_size, cfg.input_size)
    if cfg.channels is not None:
      arch.validate_channels(cfg.channels)
  except ValueError as e:
    raise TrainError(str(e)) from None
  if not isinstance(cfg.head_epochs, int) or not (
      0 <= cfg.head_epochs <= cfg.epochs):
    raise TrainError(f"--head_epochs must be in [0, --epochs={cfg.epochs}], "
                     f"got {cfg.head_epochs!r}.")
  if cfg.head_epochs and not cfg.init_weights:
    raise TrainError("--head_epochs trains a new head on pretrained weights; "
                     "pass --init_weights too.")
  if cfg.fine_tune_learning_rate is not None and not (
      cfg.fine_tune_learning_rate > 0):
    raise TrainError("--fine_tune_learning_rate must be positive, got "
                     f"{cfg.fine_tune_learning_rate}.")
  for name, choices in (("fine_tune_bn", FINE_TUNE_BN),
                        ("augment", AUGMENTS)):
    if getattr(cfg, name) not in choices:
      raise TrainError(f"--{name} must be one of {choices}, got "
                       f"{getattr(cfg, name)!r}.")
  if not 0.0 <= cfg.label_smoothing < 1.0:
    raise TrainError("--label_smoothing must be in [0, 1), got "
                     f"{cfg.label_smoothing}.")
  if not 0.0 <= cfg.ema < 1.0:
    raise TrainError(f"--ema must be in [0, 1), got {cfg.ema}.")
  if cfg.weight_decay < 0 or cfg.warmup_epochs < 0:
    raise TrainError("--weight_decay and --warmup_epochs must be >= 0.")
  if not isinstance(cfg.checkpoint_every_steps, int) or (
      cfg.checkpoint_every_steps < 0):
    raise TrainError("--checkpoint_every_steps must be >= 0, got "
                     f"{cfg.checkpoint_every_steps!r}.")
  for name in ("epochs", "batch_size", "bn_reestimate_batches",
               "tensorboard_every_steps"):
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
  if cfg.granularity not in GRANULARITIES:
    raise TrainError(f"--granularity must be one of {GRANULARITIES}, got "
                     f"{cfg.granularity!r}.")
  _validate_qat(cfg)
  if cfg.dataset not in ("folder", "mnist"):
    raise TrainError(f"--dataset must be 'folder' or 'mnist', got "
                     f"{cfg.dataset!r}.")
  if cfg.train_files or cfg.val_files:
    _validate_records(cfg)


def _validate_qat(cfg):
  n = cfg.qat_freeze_bn_after_steps
  if not isinstance(n, int) or n < 0:
    raise TrainError("--qat_freeze_bn_after_steps must be >= 0 (0: never), "
                     f"got {n!r}.")
  if n and not cfg.qat:
    raise TrainError("--qat_freeze_bn_after_steps freezes the BNs of "
                     "quantization-aware training; pass --qat too.")
  if n and cfg.init_weights and cfg.fine_tune_bn == "frozen":
    raise TrainError("--qat_freeze_bn_after_steps: with --init_weights every "
                     "BatchNorm is frozen already (--fine_tune_bn=frozen); "
                     "pass --fine_tune_bn=train to train them first.")


def _validate_records(cfg):
  if cfg.data_dir or cfg.val_dir or cfg.dataset != "folder":
    raise TrainError("--train_files/--val_files read TFRecord shards instead "
                     "of --data_dir/--val_dir/--dataset=mnist; pass one kind "
                     "of input.")
  if not cfg.train_files or not cfg.val_files:
    raise TrainError("TFRecord training needs both --train_files and "
                     "--val_files (write the validation folder with "
                     "//tools:make_tfrecords --prefix=val too).")


def run_config(c, class_names, fine_tune_learning_rate):
  """What run.json records of a run (run_dir.RESUME_KEYS must match)."""
  return {"alpha": float(c.alpha), "input_size": c.input_size,
          "channels": c.channels, "class_names": class_names,
          "batch_size": c.batch_size, "seed": c.seed,
          "optimizer": c.optimizer, "learning_rate": c.learning_rate,
          "lr_schedule": c.lr_schedule,
          "bn_momentum": c.bn_momentum, "epochs": c.epochs,
          "init_weights": c.init_weights, "freeze": c.freeze,
          "head_epochs": c.head_epochs,
          "fine_tune_learning_rate": fine_tune_learning_rate,
          "fine_tune_bn": c.fine_tune_bn, "augment": c.augment,
          "warmup_epochs": c.warmup_epochs,
          "label_smoothing": c.label_smoothing,
          "weight_decay": c.weight_decay, "ema": c.ema, "qat": c.qat,
          "granularity": c.granularity,
          "qat_freeze_bn_after_steps": c.qat_freeze_bn_after_steps}


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


def scan_records(cfg):
  """(train RecordFiles, validation RecordFiles, class names) of a
  --train_files run; the classes are the sidecar's."""
  try:
    train = record_schema.RecordFiles(cfg.train_files, "--train_files")
    val = record_schema.RecordFiles(cfg.val_files, "--val_files")
  except folders.DataError as e:
    raise TrainError(str(e)) from None
  if val.class_names != train.class_names:
    raise TrainError(f"--val_files classes {val.class_names[:5]}... differ "
                     f"from --train_files classes {train.class_names[:5]}...; "
                     "write both from folders with the same class "
                     "sub-folders.")
  check_classes(cfg, train.class_names)
  return train, val, train.class_names
