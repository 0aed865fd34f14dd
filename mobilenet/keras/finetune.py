"""Fine-tuning: start from pretrained weights, freeze part of the network.

* `--init_weights` is any `--weights` spec (model_source.resolve: imagenet,
  bundled, a Keras-layout .h5 or one of our checkpoints).  A different class
  count keeps the model's fresh, Keras-style initialized head; 3-channel
  weights on 1-channel data sum Conv1's kernel over RGB (exact: a gray image
  replicated to RGB gives the same first activations), 1-channel weights on
  3-channel data spread it evenly over RGB.
* `--freeze=none|backbone|<Keras layer name>` (everything up to and
  including that layer).  A frozen layer is not trainable and its BatchNorm
  runs in inference mode, so kernels and moving statistics stay
  bit-identical (the Keras transfer-learning rule).
* BN trap: fine-tuning pretrained BatchNorms in training mode replaces their
  statistics with small-batch ones of the new data and ruins the features
  (keras.applications ImageNet -> digits, 96 px, 1 head + 2 full epochs:
  69.6 % vs 96.9 % with BN in inference mode).  So by default every
  BatchNorm of a run started from pretrained weights stays frozen
  (`--fine_tune_bn=frozen`: moving statistics, gamma and beta fixed), as
  object-detection fine-tuning does; `train` updates them like any layer.
"""

import numpy as np

from mobilenet.keras import layers as layers_lib
from mobilenet.keras import model as model_lib
from mobilenet.keras.train_config import TrainError

HEAD = "predictions"


def load_init_weights(model, source, cfg, classes):
  """Copies the weights of `source` (init_source.resolve) into `model`
  (built for cfg.alpha / cfg.channels / `classes`); returns a one-line
  summary."""
  params = dict(source.params)
  said = [f"initialized from {source.description}: MobileNetV2 alpha="
          f"{cfg.alpha} at {cfg.input_size}x{cfg.input_size}x{cfg.channels}"]
  kernel = np.asarray(params["Conv1"]["kernel"])
  if source.channels == 3 and cfg.channels == 1:
    params["Conv1"] = {"kernel": kernel.sum(axis=2, keepdims=True)}
    said.append("Conv1 kernel summed over RGB for 1-channel input")
  elif source.channels == 1 and cfg.channels == 3:
    params["Conv1"] = {"kernel": np.repeat(kernel / 3.0, 3, axis=2)}
    said.append("Conv1 kernel spread over RGB for 3-channel input")
  if source.classes != classes:
    params.pop(HEAD, None)
    said.append(f"fresh {classes}-class head (weights have "
                f"{source.classes} classes)")
  for layer, keys in model_lib._param_layers(model):  # pylint: disable=protected-access
    if layer.name in params:
      layer.set_weights([np.asarray(params[layer.name][k], np.float32)
                         for k in keys])
  return "; ".join(said)


def frozen_layers(model, spec):
  """Names of the layers `spec` (none|backbone|<layer name>) freezes."""
  names = [layer.name for layer in model.layers]
  if spec == "none":
    return []
  if spec == "backbone":
    return [n for n in names if n != HEAD]
  if spec not in names:
    weighted = [l.name for l, _ in model_lib._param_layers(model)]  # pylint: disable=protected-access
    raise TrainError(f"--freeze={spec!r}: no such layer; use none, backbone "
                     f"or a Keras layer name such as {weighted[1]}, "
                     f"block_6_project_BN or {weighted[-2]}.")
  return names[:names.index(spec) + 1]


def apply(model, freeze, freeze_bn):
  """Trainable flags for `freeze`; with `freeze_bn` every BatchNorm is
  frozen too (inference mode, gamma/beta fixed).  Returns the number of
  frozen layers."""
  frozen = set(frozen_layers(model, freeze))
  count = 0
  for layer in model.layers:
    trainable = layer.name not in frozen and not (
        freeze_bn and isinstance(layer, layers_lib.BatchNorm))
    layer.trainable = trainable
    count += not trainable and bool(layer.weights)
  return count


def set_phase(trainer, epoch):
  """Puts `trainer`'s model in the phase of `epoch`: the head phase (first
  --head_epochs, backbone frozen) or fine-tuning (--freeze).  Returns True
  when the trainable flags changed (the steps must be traced again)."""
  cfg = trainer.cfg
  phase = "head" if epoch < cfg.head_epochs else "tune"
  if phase == getattr(trainer, "_phase", None):
    return False
  trainer._phase = phase  # pylint: disable=protected-access
  frozen = apply(trainer.model, "backbone" if phase == "head" else cfg.freeze,
                 freeze_bn=bool(cfg.init_weights) and
                 cfg.fine_tune_bn == "frozen")
  if cfg.init_weights or cfg.freeze != "none":
    from mobilenet.keras import recipe  # pylint: disable=g-import-not-at-top
    what = ("head phase, backbone frozen" if phase == "head" else
            "training at learning rate "
            f"{recipe.fine_tune_learning_rate(cfg):g}")
    weighted = sum(bool(l.weights) for l in trainer.model.layers)
    trainer.log(f"{what}: {frozen} of {weighted} weighted layers frozen")
  return True
