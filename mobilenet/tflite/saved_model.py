"""A ModelSource as a TensorFlow SavedModel (`convert --target=saved_model`).

The format TF Serving, `tf.saved_model.load`, the TF.js and ONNX converters
consume.  The graph is the raw-op forward (`forward.apply`, BN not folded)
over tf.Variables, so a loaded model can be fine-tuned; nothing of this
project is needed to load or run it.  Signatures:

  serving_default     images: uint8 [N, H, W, C] pixels (the model's size and
                      channels); the normalisation the weights were trained
                      with runs inside the graph.
  serving_normalized  images: float32 [N, H, W, C], already normalised.

Both return `probabilities` [N, classes], `top_k_scores` and
`top_k_classes` (class names, strings) [N, k].  The class names are also
the asset `assets/labels.txt`, one per line in output order; the loaded
object's `.variables` / `.trainable_variables` are the weights.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from mobilenet.core import files
from mobilenet.core import forward
from mobilenet.tflite import classifier

DEFAULT_TOP_K = 5
LABELS_ASSET = "labels.txt"
SIGNATURES = ("serving_default", "serving_normalized")


def normalize_graph(pixels, normalization):
  """uint8 pixels -> model input inside the graph, the same float32 steps as
  preprocess.normalize (so outputs match the Python path bit for bit)."""
  spec = classifier.normalization_spec(normalization)
  x = tf.cast(pixels, tf.float32)
  if spec["mode"] == "tf":
    return x / 127.5 - 1.0
  if spec["mode"] == "mean_std":
    return ((x - tf.constant(spec["mean"], tf.float32)) /
            tf.constant(spec["std"], tf.float32))
  raise ValueError(f"a SavedModel takes float input; normalization "
                   f"{spec['mode']!r} has none")


class Classifier(tf.Module):
  """The exported module: weights as variables, the two signatures."""

  def __init__(self, source, labels_path, top_k=DEFAULT_TOP_K):
    super().__init__(name="mobilenet_v2")
    # Moving BN statistics are state, not parameters to train.
    self.weights = {
        layer: {k: tf.Variable(v, trainable=not k.startswith("moving_"),
                               name=f"{layer}/{k}")
                for k, v in values.items()}
        for layer, values in source.params.items()}
    self.alpha = source.alpha
    self.normalization = classifier.normalization_spec(source.normalization)
    self.labels_file = tf.saved_model.Asset(labels_path)
    self._names = tf.constant(source.labels)
    self._k = min(top_k, source.classes)
    shape = [None, source.input_size, source.input_size, source.channels]
    self.serving_default = tf.function(
        self._from_pixels, input_signature=[
            tf.TensorSpec(shape, tf.uint8, name="images")])
    self.serving_normalized = tf.function(
        self._outputs, input_signature=[
            tf.TensorSpec(shape, tf.float32, name="images")])

  def _outputs(self, images):
    probs = forward.apply(self.weights, images, alpha=self.alpha)
    scores, index = tf.math.top_k(probs, k=self._k)
    return {"probabilities": probs, "top_k_scores": scores,
            "top_k_classes": tf.gather(self._names, index)}

  def _from_pixels(self, images):
    return self._outputs(normalize_graph(images, self.normalization))


def default_name(source):
  from mobilenet.tflite import converter  # pylint: disable=g-import-not-at-top
  return converter.default_name(source, "saved_model")


def save(source, directory, name=None, top_k=DEFAULT_TOP_K):
  """Writes the SavedModel of `source` to `directory`/<name> whole or not at
  all (a temp directory beside it, then renamed; an older one is replaced
  only then).  Returns its path."""
  if not source.include_top:
    raise ValueError("a SavedModel export needs a model with a classifier")
  final = os.path.join(directory, name or default_name(source))
  os.makedirs(directory, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix="." + os.path.basename(final) + ".",
                         suffix=".tmp", dir=directory)
  try:
    labels_path = os.path.join(tmp, LABELS_ASSET)
    with open(labels_path, "w", encoding="utf-8") as f:
      f.write("".join(n + "\n" for n in source.labels))
    module = Classifier(source, labels_path, top_k)
    # TF Hub's reusable-SavedModel attributes: a loaded object has
    # .variables and .trainable_variables to fine-tune (a tf.Module's
    # properties of those names are not saved).
    root = tf.train.Checkpoint(
        model=module, variables=list(module.variables),
        trainable_variables=list(module.trainable_variables))
    out = os.path.join(tmp, "model")
    tf.saved_model.save(root, out, signatures={
        "serving_default": module.serving_default,
        "serving_normalized": module.serving_normalized})
    os.chmod(out, 0o755)
    files.replace_dir(out, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final

