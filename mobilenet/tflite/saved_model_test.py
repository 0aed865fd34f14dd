"""convert --target=saved_model: the SavedModel loads in a process that has
none of this project's code, and its probabilities equal the core forward's."""

import os
import subprocess
import sys

from absl.testing import absltest
from matplotlib import cbook
import numpy as np

from mobilenet.core import forward
from mobilenet.core import model_source
from mobilenet.core import preprocess
from mobilenet.testing import models
from mobilenet.testing import tools
from mobilenet.tflite import saved_model

_ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
HELDOUT = os.path.join(_ROOT, "data", "mnist_heldout")
CONVERT = "mobilenet/tflite/convert.py"

# Runs in the bare process: TensorFlow only, the model from its directory.
_CHILD = r"""
import json, sys
import numpy as np
try:
  import mobilenet
  sys.exit("project code is importable: " + repr(mobilenet))
except ImportError:
  pass
import tensorflow as tf
model_dir, pixels_npy, normalized_npy, out_npz = sys.argv[1:5]
m = tf.saved_model.load(model_dir)
pixels = tf.constant(np.load(pixels_npy))
default = m.signatures["serving_default"](images=pixels)
normalized = m.signatures["serving_normalized"](
    images=tf.constant(np.load(normalized_npy)))
with tf.GradientTape() as tape:
  loss = -tf.reduce_mean(tf.math.log(
      m.signatures["serving_default"](images=pixels)["probabilities"][:, 0]))
grads = tape.gradient(loss, m.trainable_variables)
np.savez(out_npz, probabilities=default["probabilities"].numpy(),
         normalized=normalized["probabilities"].numpy(),
         top_k_classes=default["top_k_classes"].numpy().astype(str),
         top_k_scores=default["top_k_scores"].numpy(),
         trainable=len(m.trainable_variables),
         nonzero_grads=sum(int(g is not None and bool(tf.reduce_any(g != 0)))
                           for g in grads))
"""


def _bare_python(*args, cwd):
  """This interpreter with only third-party packages importable: no
  runfiles root, no project directory, no PYTHONPATH of ours."""
  third_party = [p for p in sys.path if "site-packages" in p]
  env = {"PATH": os.environ.get("PATH", ""),
         "PYTHONPATH": os.pathsep.join(third_party),
         "TF_CPP_MIN_LOG_LEVEL": "2"}
  if "TF_ENABLE_ONEDNN_OPTS" in os.environ:  # the same kernels as the parent
    env["TF_ENABLE_ONEDNN_OPTS"] = os.environ["TF_ENABLE_ONEDNN_OPTS"]
  return subprocess.run([sys.executable, "-S", "-s"] + list(args), env=env,
                        cwd=cwd, capture_output=True, text=True, timeout=600,
                        check=False)


class SavedModelTest(absltest.TestCase):

  def _load_bare(self, model_dir, pixels, normalized):
    tmp = self.create_tempdir().full_path
    np.save(os.path.join(tmp, "pixels.npy"), pixels)
    np.save(os.path.join(tmp, "normalized.npy"), normalized)
    out = os.path.join(tmp, "out.npz")
    result = _bare_python("-c", _CHILD, model_dir, "pixels.npy",
                          "normalized.npy", out, cwd=tmp)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    return np.load(out)

  def _check(self, source, model_dir, pixels):
    normalized = preprocess.normalize(pixels, source.normalization)
    want = forward.forward(source.params, normalized,
                           alpha=source.alpha).numpy()
    got = self._load_bare(model_dir, pixels, normalized)
    np.testing.assert_allclose(got["probabilities"], want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["normalized"], want, rtol=0, atol=1e-5)
    k = min(5, source.classes)
    order = np.argsort(-want, axis=1, kind="stable")[:, :k]
    names = np.asarray(source.labels)[order]
    # Near-ties may swap inside the top k; the winner must not.
    np.testing.assert_array_equal(got["top_k_classes"][:, 0], names[:, 0])
    self.assertEqual(got["top_k_classes"].shape, (len(pixels), k))
    # Variables, not constants: every kernel/gamma/beta/bias is trainable
    # and the loss reaches them.
    trainable = sum(len([k for k in v if not k.startswith("moving_")])
                    for v in source.params.values())
    self.assertEqual(int(got["trainable"]), trainable)
    self.assertGreater(int(got["nonzero_grads"]), trainable // 2)
    return want

  def test_bundled_digits_via_convert(self):
    out = self.create_tempdir().full_path
    result = tools.run_tool(CONVERT, "--target=saved_model", "--save_to", out,
                            "--weights=bundled", "--name=digits")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    model_dir = os.path.join(out, "digits")
    self.assertEqual(sorted(os.listdir(out)), ["digits"])  # no temp left
    source = model_source.resolve("bundled")
    paths = preprocess.find_images(HELDOUT)[::50]  # 20 real digits, 0-9
    pixels = preprocess.load_images(paths, source.input_size,
                                    channels=source.channels, mode="raw")
    want = self._check(source, model_dir, pixels)
    truth = [os.path.basename(os.path.dirname(p)) for p in paths]
    self.assertGreaterEqual(
        np.mean(np.asarray(source.labels)[want.argmax(1)] == truth), 0.9)
    with open(os.path.join(model_dir, "assets", "labels.txt")) as f:
      self.assertEqual(f.read().split("\n")[:-1], source.labels)
    cli = _bare_python("-m", "tensorflow.python.tools.saved_model_cli",
                       "show", "--all", "--dir", model_dir, cwd=out)
    self.assertEqual(cli.returncode, 0, cli.stderr[-3000:])
    for signature in ("serving_default", "serving_normalized"):
      self.assertIn(f"signature_def['{signature}']", cli.stdout)
    self.assertIn("dtype: DT_UINT8", cli.stdout)
    self.assertIn("shape: (-1, 48, 48, 1)", cli.stdout)
    # A second export replaces the first whole.
    again = tools.run_tool(CONVERT, "--target=saved_model", "--save_to", out,
                           "--weights=bundled", "--name=digits")
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    self.assertEqual(sorted(os.listdir(out)), ["digits"])

  def test_photo_224_alpha_1(self):
    source = models.live_random_source(alpha=1.0, input_size=224, channels=3,
                                       classes=1000, num_images=4)
    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    pixels = preprocess.load_images([photo], 224, channels=3, mode="raw")
    out = self.create_tempdir().full_path
    model_dir = saved_model.save(source, out, name="photo")
    self._check(source, model_dir, pixels)

  def test_bad_input_one_line_nothing_written(self):
    out = os.path.join(self.create_tempdir().full_path, "new")
    for args, says in (
        (["--weights=/nonexistent.h5"], "no such file"),
        (["--quantize=int8"], "--quantize is for the .tflite targets")):
      result = tools.run_tool(CONVERT, "--target=saved_model", "--save_to",
                              out, *args)
      self.assertEqual(result.returncode, 1)
      errors = tools.error_lines(result)
      self.assertLen(errors, 1, result.stderr)
      self.assertIn(says, errors[0])
      self.assertNotIn("Traceback", result.stderr)
      self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()
