"""Installs //:wheel into a fresh venv and runs a forward pass from it."""

import glob
import os
import subprocess
import sys

from absl.testing import absltest

_FORWARD = """
import numpy as np
import mobilenet.core.forward as forward
print(forward.__file__)
model = forward.build(alpha=0.35, input_shape=(32, 32, 3), classes=4)
probs = np.asarray(model(np.zeros((1, 32, 32, 3), np.float32)))
assert probs.shape == (1, 4), probs.shape
print("sum", probs.sum())
"""


class WheelTest(absltest.TestCase):

  def test_install_and_run(self):
    wheels = glob.glob(os.path.join(os.path.dirname(__file__), "mobilenet_v2-*.whl"))
    self.assertLen(wheels, 1)
    venv = self.create_tempdir().full_path
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheels[0]],
                   check=True)
    show = subprocess.run([python, "-m", "pip", "show", "mobilenet_v2"], check=True,
                          capture_output=True, text=True).stdout
    self.assertIn("tensorflow", show)
    # Third-party packages come from this test's pip hub (installing TF from the
    # network in a test would take minutes); the package itself only from the venv.
    third_party = [p for p in sys.path if "mnv2_pip_" in p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(third_party), PYTHONNOUSERSITE="1")
    out = subprocess.run([python, "-c", _FORWARD], check=True, capture_output=True, text=True,
                         env=env, cwd=venv).stdout
    self.assertIn(os.path.join(venv, "lib"), out.splitlines()[0])
    self.assertAlmostEqual(float(out.split("sum")[1]), 1.0, places=4)


if __name__ == "__main__":
  absltest.main()
