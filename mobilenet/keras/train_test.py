"""The train/predict/eval command line, run as a subprocess."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl.testing import absltest
from absl.testing import parameterized

from mobilenet.core import labels as labels_lib
from mobilenet.core import model_source
from mobilenet.keras import testdata

CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
DATA = labels_lib.data_path("")


def _run(args, cwd=None, env=None):
  full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path),
                  TF_CPP_MIN_LOG_LEVEL="2")
  full_env.update(env or {})
  return subprocess.run([sys.executable, CLI] + args, capture_output=True,
                        text=True, cwd=cwd, env=full_env, timeout=300,
                        check=False)


class BadInputTest(parameterized.TestCase):

  def _assert_one_line_error(self, proc, *needles):
    self.assertNotEqual(proc.returncode, 0)
    self.assertNotIn("Traceback", proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    self.assertLen(lines, 1, proc.stderr)
    for needle in needles:
      self.assertIn(needle, lines[0])

  def test_missing_and_empty_data_dir(self):
    d = self.create_tempdir()
    missing = os.path.join(d.full_path, "nope")
    self._assert_one_line_error(_run(["train", f"--data_dir={missing}"]),
                                "no such directory")
    self._assert_one_line_error(_run(["train", f"--data_dir={d.full_path}"]),
                                "no class sub-folders")
    self._assert_one_line_error(_run(["train"]), "--data_dir is not set")

  def test_class_folder_without_images(self):
    d = self.create_tempdir()
    testdata.make_folder(d.full_path, per_class=2, bad_files=False)
    os.makedirs(os.path.join(d.full_path, "empty_class"))
    d.create_file("empty_class/notes.txt", content="no images here")
    self._assert_one_line_error(_run(["train", f"--data_dir={d.full_path}"]),
                                "'empty_class' has no images")

  @parameterized.parameters(("--alpha=-0.5", "alpha"),
                            ("--input_size=16", ">= 32"),
                            ("--channels=2", "channels"),
                            ("--epochs=0", "--epochs"))
  def test_invalid_flags(self, flag, needle):
    d = self.create_tempdir()
    testdata.make_folder(d.full_path, per_class=2, bad_files=False)
    self._assert_one_line_error(
        _run(["train", f"--data_dir={d.full_path}", flag]), needle)

  def test_unknown_command_and_bad_image(self):
    self._assert_one_line_error(_run(["fly"]), "expected a command")
    d = self.create_tempdir()
    bad = d.create_file("bad.png", content="not a png").full_path
    self._assert_one_line_error(_run(["predict", "--weights=random", bad]),
                                "bad.png")


class PredictTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if not os.path.exists(model_source.bundled_sidecar_path()):
      self.skipTest("bundled model not built yet")

  def test_bundled_digits_relative_to_build_working_directory(self):
    digits = (0, 2, 3, 7, 9)
    proc = _run(["predict", "--top_k=3"] +
                [f"samples/digit_{d}.png" for d in digits],
                cwd="/", env={"BUILD_WORKING_DIRECTORY": DATA})
    self.assertEqual(proc.returncode, 0, proc.stderr)
    lines = proc.stdout.strip().splitlines()
    self.assertLen(lines, len(digits))
    for d, line in zip(digits, lines):
      path, top = line.split(": ", 1)
      self.assertTrue(path.endswith(f"digit_{d}.png"), line)
      self.assertEqual(top.split(" ")[0], str(d), line)
      self.assertLen(top.split(", "), 3)


if __name__ == "__main__":
  absltest.main()
