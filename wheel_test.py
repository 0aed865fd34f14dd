"""Installs //:wheel into a fresh venv and runs its console scripts.

From a temp directory outside the repository, as a user would:
`mobilenet-convert --save_to out` (weights=auto, offline: the bundled digit
model, calibrated on the packaged calibration images), then `mobilenet-infer`
on the new .tflite, the other console scripts on a sample digit, and the
packaged label files.  Everything of ours must come from the venv.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

from absl.testing import absltest

_HERE = os.path.dirname(os.path.abspath(__file__))
_DIGIT = os.path.join(_HERE, "data", "samples", "digit_7.png")
_DIGIT_3 = os.path.join(_HERE, "data", "samples", "digit_3.png")
_SCRIPTS = ("mobilenet-convert", "mobilenet-evaluate", "mobilenet-infer",
            "mobilenet-tf-inference", "mobilenet-train")
# Converted by `mobilenet-convert` with its defaults from the bundled model.
_MODEL = "mobilenet_v2_bundled_a035_48x48x1_int8"

_CHECK = """
import importlib.util, json
import mobilenet.core.labels as labels
mods = ["mobilenet.console", "mobilenet.tflite.convert", "mobilenet.tflite.infer",
        "mobilenet.keras.train", "mobilenet.tools.tf_inference",
        "mobilenet.tools.evaluate", "mobilenet.evaluate.models",
        "mobilenet.tflite.saved_model"]
print(json.dumps({
    "files": [importlib.util.find_spec(m).origin for m in mods] + [labels.__file__],
    "data": labels.data_path(""),
    "imagenet": len(labels.imagenet_labels()),
    "mnist": labels.mnist_labels(),
}))
"""


def _wheel():
  wheels = glob.glob(os.path.join(_HERE, "mobilenet_v2-*.whl"))
  assert len(wheels) == 1, wheels
  return wheels[0]


def _top1(lines, image_line):
  """First name printed under `image_line` (infer / tf_inference format)."""
  i = lines.index(image_line)
  return lines[i + 1].split()[0]


class WheelContentsTest(absltest.TestCase):

  def test_contents(self):
    with zipfile.ZipFile(_wheel()) as z:
      names = set(z.namelist())
      entry_points = z.read("mobilenet_v2-0.1.0.dist-info/entry_points.txt").decode()
    for name in ("mobilenet/console.py", "mobilenet/core/forward.py",
                 "mobilenet/core/files.py", "mobilenet/core/model_source.py",
                 "mobilenet/keras/model.py", "mobilenet/keras/train.py",
                 "mobilenet/tflite/converter.py", "mobilenet/tflite/infer.py",
                 "mobilenet/tools/__init__.py", "mobilenet/tools/tf_inference.py",
                 "mobilenet/data/imagenet_labels.txt", "mobilenet/data/mnist_labels.txt",
                 "mobilenet/data/bundled/mnist_mobilenet_v2.h5",
                 "mobilenet/data/bundled/mnist_mobilenet_v2.json",
                 "mobilenet/tflite/mobilenet_v2_int8.tflite",
                 "mobilenet/tflite/mobilenet_v2_int8.json"):
      self.assertIn(name, names)
    self.assertLen([n for n in names if n.startswith("mobilenet/data/calibration/")], 100)
    # No tests, test helpers or repository-only data.
    self.assertEqual([n for n in names if n.endswith("_test.py") or "testing" in n
                      or "clitest" in n or "testdata" in n or "mnist_heldout" in n
                      or "/samples/" in n], [])
    # Data directories stay plain directories.
    self.assertNotIn("mobilenet/data/__init__.py", names)
    for script in _SCRIPTS:
      self.assertIn(script + " = mobilenet.console:", entry_points)


class WheelInstallTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.environ.get("TEST_TMPDIR") or absltest.get_default_test_tmpdir()
    cls.venv = os.path.join(root, "venv")
    shutil.rmtree(cls.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", cls.venv], check=True)
    cls.python = os.path.join(cls.venv, "bin", "python")
    subprocess.run([cls.python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    _wheel()], check=True)
    # Third-party packages come from this test's pip hub (installing TF from the
    # network in a test would take minutes); our package only from the venv.
    third_party = [p for p in sys.path if "mnv2_pip_" in p]
    cls.env = dict(os.environ, PYTHONPATH=os.pathsep.join(third_party),
                   PYTHONNOUSERSITE="1",
                   # No ImageNet file in the Keras cache: weights=auto falls
                   # back to the bundled model (the test runs without network).
                   KERAS_HOME=os.path.join(root, "keras_home"))
    cls.env.pop("BUILD_WORKING_DIRECTORY", None)
    # A user's directory: outside the repository, nothing of ours in it.
    cls.work = os.path.join(root, "user")
    shutil.rmtree(cls.work, ignore_errors=True)
    os.makedirs(cls.work)
    shutil.copy(_DIGIT, os.path.join(cls.work, "digit_7.png"))

  def run_in_work(self, *argv):
    r = subprocess.run(list(argv), capture_output=True, text=True, env=self.env,
                       cwd=self.work, timeout=600, check=False)
    self.assertEqual(r.returncode, 0, f"{argv}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r.stdout

  def script(self, name):
    return os.path.join(self.venv, "bin", name)

  def test_pip_sees_the_requirements_and_scripts(self):
    show = self.run_in_work(self.python, "-m", "pip", "show", "mobilenet_v2")
    for dist in ("tensorflow", "ai-edge-litert", "keras", "h5py", "pillow"):
      self.assertIn(dist, show)
    for name in _SCRIPTS:
      with open(self.script(name)) as f:
        head = f.readline() + f.readline()
      # `#!<venv python>`, or for a long path `#!/bin/sh` + a line exec'ing it.
      self.assertIn(self.python, head)

  def test_imports_and_data_come_from_the_venv(self):
    out = json.loads(self.run_in_work(self.python, "-c", _CHECK))
    site = os.path.join(self.venv, "lib")
    for path in out["files"] + [out["data"]]:
      self.assertTrue(path.startswith(site), path)
    self.assertTrue(out["data"].endswith(os.path.join("mobilenet", "data")), out["data"])
    self.assertEqual(out["imagenet"], 1000)
    self.assertEqual(out["mnist"], [str(i) for i in range(10)])

  def test_convert_then_infer(self):
    out = self.run_in_work(self.script("mobilenet-convert"), "--save_to", "out")
    self.assertIn("weights=auto: using bundled MNIST model", out)
    tflite = os.path.join(self.work, "out", _MODEL + ".tflite")
    self.assertTrue(os.path.isfile(tflite), os.listdir(os.path.join(self.work, "out")))
    with open(os.path.join(self.work, "out", _MODEL + ".json")) as f:
      meta = json.load(f)
    # Paths relative to site-packages: the installed package data was used.
    self.assertEqual(meta["weights"]["path"], "mobilenet/data/bundled/mnist_mobilenet_v2.h5")
    self.assertEqual(meta["calibration"]["dir"], "mobilenet/data/calibration")
    self.assertEqual(meta["calibration"]["count"], 100)

    out = self.run_in_work(self.script("mobilenet-infer"), "--model",
                           os.path.join("out", _MODEL + ".tflite"), "-i", "digit_7.png")
    self.assertEqual(_top1(out.splitlines(), "digit_7.png"), "7", out)

  def test_infer_default_model(self):
    out = self.run_in_work(self.script("mobilenet-infer"), "-i", "digit_7.png", "--top_k", "1")
    self.assertEqual(_top1(out.splitlines(), "digit_7.png"), "7", out)

  def test_tf_inference(self):
    out = self.run_in_work(self.script("mobilenet-tf-inference"), "-i", "digit_7.png",
                           "--top_k", "1")
    lines = out.splitlines()
    self.assertEqual(_top1(lines, next(l for l in lines if l.endswith("digit_7.png"))), "7",
                     out)

  def test_train_predict(self):
    out = self.run_in_work(self.script("mobilenet-train"), "predict", "digit_7.png",
                           "--top_k", "1")
    self.assertRegex(out, r"digit_7\.png: 7 [01]\.\d+")

  def test_evaluate(self):
    for digit, path in (("3", _DIGIT_3), ("7", _DIGIT)):
      os.makedirs(os.path.join(self.work, "digits", digit), exist_ok=True)
      shutil.copy(path, os.path.join(self.work, "digits", digit))
    out = self.run_in_work(self.script("mobilenet-evaluate"), "--data", "digits",
                           "--model", "bundled", "--save_to", "eval")
    self.assertIn("| bundled (float) | 2 | 100.00 % (2) |", out)
    self.assertEqual(sorted(os.listdir(os.path.join(self.work, "eval"))),
                     ["evaluation.json", "evaluation.md", "evaluation_bundled.png"])


if __name__ == "__main__":
  absltest.main()
