"""The train/predict/eval command line, run as a subprocess."""

import os
import shutil

from absl.testing import absltest
from absl.testing import parameterized

from mobilenet.core import labels as labels_lib
from mobilenet.testing import images
from mobilenet.testing import keras_reference
from mobilenet.testing import models
from mobilenet.testing import tools

DATA = labels_lib.data_path("")


def _run(args, cwd=None, env=None):
  return tools.run_tool("mobilenet/keras/train.py", *args, cwd=cwd, env=env,
                        timeout=300)


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
    images.make_folder(d.full_path, per_class=2, bad_files=False)
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
    images.make_folder(d.full_path, per_class=2, bad_files=False)
    self._assert_one_line_error(
        _run(["train", f"--data_dir={d.full_path}", flag]), needle)

  def test_unknown_command_and_bad_image(self):
    self._assert_one_line_error(_run(["fly"]), "expected a command")
    d = self.create_tempdir()
    bad = d.create_file("bad.png", content="not a png").full_path
    self._assert_one_line_error(_run(["predict", "--weights=random", bad]),
                                "bad.png")


class PredictTest(absltest.TestCase):

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

  def test_predict_takes_labels_for_a_1001_output_file(self):
    d = self.create_tempdir().full_path
    h5, labels = models.digit_model_1001(d)
    digits = (0, 2, 3, 7, 9)
    images = [os.path.join(DATA, f"samples/digit_{k}.png") for k in digits]
    proc = _run(["predict", "--weights", h5, "--labels", labels,
                 "--input_size", "48", "--top_k=1"] + images)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertNotIn("note:", proc.stderr)  # nothing was assumed
    lines = proc.stdout.strip().splitlines()
    self.assertLen(lines, len(digits), proc.stdout)
    for k, line in zip(digits, lines):
      self.assertEqual(line.split(": ", 1)[1].split(" ")[0],
                       models.DIGIT_NAMES[k], line)

  def test_eval_matches_class_folders_to_the_labels_given(self):
    d = self.create_tempdir()
    names = d.create_file("names.txt", content="\n".join(
        f"c{k}" for k in range(10))).full_path
    renamed, plain = (os.path.join(d.full_path, n) for n in ("renamed",
                                                              "plain"))
    # Folders 0 and 1 swapped: the true accuracy is well below 1, so a
    # printed number is checked against Keras, not against "all right".
    paths, truth = [], []
    for k in range(10):
      src = os.path.join(DATA, "mnist_heldout", str((1 - k) if k < 2 else k))
      for root, name in ((renamed, f"c{k}"), (plain, str(k))):
        os.makedirs(os.path.join(root, name))
        for f in sorted(os.listdir(src))[:3]:
          shutil.copy(os.path.join(src, f), os.path.join(root, name, f))
      paths += [os.path.join(src, f) for f in sorted(os.listdir(src))[:3]]
      truth += [k] * 3
    with_labels = _run(["eval", "--labels", names, "--data_dir", renamed])
    without = _run(["eval", "--data_dir", plain])
    self.assertEqual(with_labels.returncode, 0, with_labels.stderr)
    self.assertEqual(without.returncode, 0, without.stderr)
    correct = sum(p == t for p, t in zip(keras_reference.bundled_top1(paths), truth))
    self.assertBetween(correct, 1, len(paths) - 3)  # the swap shows
    want = f"accuracy {correct / len(paths):.4f} ({correct}/{len(paths)})"
    for proc in (with_labels, without):
      self.assertEqual(proc.stdout.split(" of ")[0], want, proc.stdout)
    # The folders no longer match the bundled model's own names.
    mismatch = _run(["eval", "--data_dir", renamed])
    self.assertNotEqual(mismatch.returncode, 0)
    errors = [l for l in mismatch.stderr.splitlines() if l.strip()]
    self.assertLen(errors, 1, mismatch.stderr)
    self.assertIn("do not match the model's labels", errors[0])


if __name__ == "__main__":
  absltest.main()
