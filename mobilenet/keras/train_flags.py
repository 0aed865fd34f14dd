"""The flags of `train` (train.py): one definition each, defaults from
train_config.Config and init_source.DEFAULTS."""

from absl import flags

from mobilenet.keras import init_source
from mobilenet.keras import train_config

_D = train_config.Config()

flags.DEFINE_string("data_dir", None, "Training images: one sub-folder per "
                    "class (eval: the images to score).")
flags.DEFINE_string("val_dir", None, "Validation images, same class "
                    "sub-folders as --data_dir.")
flags.DEFINE_string("train_files", None, "Training images as sharded "
                    "TFRecords (//tools:make_tfrecords), a quoted pattern "
                    "such as 'shards/train-*'; instead of --data_dir.")
flags.DEFINE_string("val_files", None, "Validation TFRecord shards, e.g. "
                    "'shards/val-*'; needed with --train_files.")
flags.DEFINE_float("val_split", _D.val_split, "Fraction of --data_dir held "
                   "out for validation when --val_dir is not given.")
flags.DEFINE_enum("dataset", "folder", ["folder", "mnist"], "'mnist': Keras' "
                  "MNIST download (needs network) instead of --data_dir.")
_ARCH = init_source.DEFAULTS
flags.DEFINE_float("alpha", None, "Width multiplier; default: read from the "
                   "shapes of --init_weights (predict/eval: --weights), else "
                   f"{_ARCH['alpha']}.")
flags.DEFINE_integer("input_size", None, "Square input size in px; default: "
                     "the weights' (our checkpoint's sidecar, the official "
                     "Keras file name, else 224 with a note), else "
                     f"{_ARCH['input_size']}.")
flags.DEFINE_integer("channels", None, "1 (grayscale) or 3 (RGB); default: "
                     "those of --init_weights, else "
                     f"{_ARCH['channels']}. Set, it adapts the weights' "
                     "first convolution.")
flags.DEFINE_integer("classes", None, "Number of classes (default: inferred "
                     "from the class folders; must agree when given).")
flags.DEFINE_integer("epochs", _D.epochs, "Epochs to train in total.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Learning rate.")
flags.DEFINE_enum("lr_schedule", _D.lr_schedule,
                  list(train_config.LR_SCHEDULES), "cosine: decay to 0 over "
                  "each phase (after --warmup_epochs); constant.")
flags.DEFINE_enum("optimizer", _D.optimizer, list(train_config.OPTIMIZERS),
                  "Optimizer.")
flags.DEFINE_string("checkpoint_dir", _D.checkpoint_dir, "Checkpoints, "
                    "run.json, training_curve.png and the exported model.")
flags.DEFINE_string("export_path", None, "Final weights (.h5, with a .json "
                    "sidecar beside it); default <checkpoint_dir>/model.h5.")
flags.DEFINE_enum("strategy", _D.strategy, list(train_config.STRATEGIES),
                  "tf.distribute strategy. multiworker: run this command on "
                  "every machine with its own TF_CONFIG; only the chief "
                  "writes --checkpoint_dir and the export.")
flags.DEFINE_integer("checkpoint_every_steps", _D.checkpoint_every_steps,
                     "Also checkpoint every this many steps (0: at epoch "
                     "ends and on SIGINT/SIGTERM only). With "
                     "--strategy=multiworker a worker that loses a peer "
                     "restarts itself and all resume from the chief's last "
                     "checkpoint: the steps after it are recomputed on the "
                     "same batches, never skipped "
                     "(docs/distributed_training.md).")
flags.DEFINE_integer("num_cpu_devices", 0, "Split the CPU into this many "
                     "logical devices (to try --strategy=mirrored on CPU).")
flags.DEFINE_float("bn_momentum", _D.bn_momentum, "BatchNorm moving-average "
                   "momentum. 0.99 (~100-step average) tracks the weights "
                   "within an epoch, so every epoch's val_accuracy is what the "
                   "exported model would score; Keras' 0.999 needs thousands "
                   "of steps (chance-level validation on short runs).")
flags.DEFINE_boolean("bn_reestimate", _D.bn_reestimate, "Re-estimate the BN "
                     "moving statistics over training batches at the end.")
flags.DEFINE_integer("bn_reestimate_batches", _D.bn_reestimate_batches,
                     "Training batches used for BN re-estimation.")
flags.DEFINE_integer("seed", _D.seed, "Seed for init, shuffling and split.")
flags.DEFINE_string("init_weights", None, "train: start from these weights "
                    "(imagenet, bundled, a Keras-layout .h5 or our "
                    "checkpoint) instead of random init; another class count "
                    "gets a fresh head, 3-channel weights on --channels=1 sum "
                    "Conv1 over RGB.")
flags.DEFINE_string("freeze", _D.freeze, "train: none, backbone (all but the "
                    "head) or a Keras layer name (it and every layer before "
                    "it); frozen layers keep their weights and BN "
                    "statistics bit-identical.")
flags.DEFINE_integer("head_epochs", _D.head_epochs, "train with "
                     "--init_weights: first epochs with the backbone frozen "
                     "(only the new head learns), then the rest of --epochs "
                     "with --freeze at --fine_tune_learning_rate.")
flags.DEFINE_float("fine_tune_learning_rate", None, "Learning rate after the "
                   "head epochs (default: --learning_rate / 10 with "
                   "--head_epochs, else --learning_rate).")
flags.DEFINE_enum("fine_tune_bn", _D.fine_tune_bn,
                  list(train_config.FINE_TUNE_BN), "With --init_weights: "
                  "'frozen' keeps every BatchNorm in inference mode with its "
                  "pretrained statistics (gamma/beta fixed) - training-mode BN "
                  "re-learns them from small batches of the new data and "
                  "wrecks the features (ImageNet->digits: 69.6% vs 96.9%); "
                  "'train' updates them like from scratch.")
flags.DEFINE_enum("augment", _D.augment, list(train_config.AUGMENTS),
                  "Training-set augmentation in the tf.data pipeline (never "
                  "on validation): digits = small shifts, rotation, zoom "
                  "(mild; the default); "
                  "photos = random-resized crop, horizontal flip, colour "
                  "jitter (for photo folders); none.")
flags.DEFINE_float("warmup_epochs", _D.warmup_epochs, "Linear learning-rate "
                   "warmup (epochs, in each phase).")
flags.DEFINE_float("label_smoothing", _D.label_smoothing, "Label smoothing "
                   "of the training loss (e.g. 0.1).")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Decoupled weight decay "
                   "(any optimizer; --optimizer=adamw defaults to 0.004).")
flags.DEFINE_float("ema", _D.ema, "Momentum of an exponential moving "
                   "average of the weights used for validation and export "
                   "(e.g. 0.999); 0 = off.")
flags.DEFINE_boolean("tensorboard", _D.tensorboard, "train: write "
                     "TensorBoard event files to <checkpoint_dir>/tensorboard "
                     "(chief only; docs/tensorboard.md).")
flags.DEFINE_integer("tensorboard_every_steps", _D.tensorboard_every_steps,
                     "train: step/loss and step/learning_rate every this "
                     "many steps.")
flags.DEFINE_boolean("feature_cache", _D.feature_cache, "train: when only "
                     "the head learns and --augment=none, compute the "
                     "backbone's pooled features once and train the head on "
                     "them (docs/feature_cache.md).")
flags.DEFINE_boolean("qat", _D.qat, "train: quantization-aware training - "
                     "BN folded into fake-quantized weights, activation "
                     "ranges learned by moving average; the export adds an "
                     "int8 .tflite converted from them, no calibration set "
                     "(docs/qat.md).")
flags.DEFINE_string("granularity", _D.granularity, "train --qat: int8 "
                    "weight scales per output channel (per_channel) or one "
                    "per tensor (per_tensor).")
flags.DEFINE_integer("qat_freeze_bn_after_steps",
                     _D.qat_freeze_bn_after_steps, "train --qat: BNs fold "
                     "their moving statistics, kept, after this many steps "
                     "(TFLite's BN freeze; docs/qat.md); 0: never.")
flags.DEFINE_string("weights", "bundled", "predict/eval: auto, imagenet, "
                    "bundled, random or a .h5/.json path.")
flags.DEFINE_string("labels", None, "predict/eval: class-names file, one per "
                    "line (a leading 'background' line fits 1001 outputs); "
                    "default: the weights' own names.")
flags.DEFINE_integer("top_k", 5, "predict: labels shown per image.")
flags.DEFINE_boolean("record", False, "eval: store the accuracy in the "
                     "checkpoint's .json sidecar as heldout_accuracy.")
