"""//tools:evaluate against the other tools' numbers, on real digits; its
report files; and its bad input (one line, exit 1, nothing written)."""

import hashlib
import json
import os
import re
import shutil

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image

from mobilenet.core import model_source
from mobilenet.testing import tools
from mobilenet.tflite import runtime
from mobilenet.tflite import saved_model
from tools import shard_writer

_ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
HELDOUT = os.path.join(_ROOT, "data", "mnist_heldout")
FIDELITY = os.path.join(_ROOT, "data", "docs", "fidelity.md")
TOOL = "tools/evaluate.py"


def _int8_model():
  return runtime.default_model()


def _run(*args):
  return tools.run_tool(TOOL, *args, timeout=900)


def _fidelity():
  """(int8 LiteRT accuracy %, TFLM accuracy %, TFLM model sha256 prefix)
  as the committed fidelity report states them (its accuracy row: float,
  LiteRT, integer-exact)."""
  with open(FIDELITY, encoding="utf8") as f:
    text = f.read()
  return (float(re.search(r"\| accuracy \| [\d.]+ % \| ([\d.]+) %", text)[1]),
          float(re.search(r"TFLM accuracy: ([\d.]+) %", text)[1]),
          re.search(r"Model sha256 ([0-9a-f]+)", text)[1])


def _small_folder(root, classes=("3", "7"), per_class=6):
  """Real held-out digits of `classes`, renamed into root/<class>/."""
  for c in classes:
    src = os.path.join(HELDOUT, c)
    os.makedirs(os.path.join(root, c))
    for name in sorted(os.listdir(src))[:per_class]:
      shutil.copy(os.path.join(src, name), os.path.join(root, c, name))
  return root


class HeldoutTest(absltest.TestCase):

  def test_float_litert_tflm_side_by_side(self):
    out = self.create_tempdir().full_path
    model = _int8_model()
    result = _run("--data", HELDOUT, "--model", "bundled", "--model", model,
                  "--model", f"micro:{model}", "--save_to", out,
                  "--report", "bundled")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(out, "bundled.json"), encoding="utf8") as f:
      report = json.load(f)
    floats, litert, micro = report["models"]
    self.assertEqual([m["kind"] for m in report["models"]],
                     ["float", "litert", "micro"])
    # Float: what `train eval` (its own loop over the same folder) prints.
    train = tools.run_tool("mobilenet/keras/train.py", "eval",
                           f"--data_dir={HELDOUT}", "--weights=bundled")
    self.assertEqual(train.returncode, 0, train.stderr[-3000:])
    correct, total = re.search(r"accuracy [\d.]+ \((\d+)/(\d+)\)",
                               train.stdout).groups()
    self.assertEqual(int(total), 1000)
    self.assertEqual(floats["top1_correct"], int(correct))
    # int8: the fidelity report's accuracies; its TFLM model is this file.
    int8_pct, tflm_pct, sha = _fidelity()
    with open(model, "rb") as f:
      self.assertTrue(hashlib.sha256(f.read()).hexdigest().startswith(sha))
    # LiteRT's default (XNNPACK) int8 rounds per CPU: the report's 998/1,000
    # top-1 agreement with the reference kernels allows 0.3 points elsewhere.
    # TFLM's integer kernels are the same on every CPU: exactly.
    self.assertAlmostEqual(100 * litert["top1"], int8_pct, delta=0.3)
    self.assertAlmostEqual(100 * micro["top1"], tflm_pct, places=6)
    for m in report["models"]:
      cm = np.asarray(m["confusion"])
      self.assertEqual(cm.sum(), 1000)
      self.assertEqual(np.trace(cm[:, :10]), m["top1_correct"])
      self.assertEqual(cm.sum(1).tolist(), [100] * 10)  # 100 per digit
      self.assertGreaterEqual(m["topk"], m["top1"])
    agree = np.asarray(report["top1_agreement"])
    np.testing.assert_array_equal(np.diag(agree), 1.0)
    self.assertEqual(sorted(os.listdir(out)), sorted(
        ["bundled.md", "bundled.json", "bundled_bundled.png",
         "bundled_mobilenet_v2_int8_litert.png",
         "bundled_mobilenet_v2_int8_micro.png"]))
    for name in os.listdir(out):
      if name.endswith(".png"):
        with Image.open(os.path.join(out, name)) as png:
          self.assertEqual(png.format, "PNG")
    with open(os.path.join(out, "bundled.md"), encoding="utf8") as f:
      self.assertIn("| bundled (float) | 1,000 | 98.", f.read())

  def test_same_file_name_in_two_folders_is_two_rows(self):
    tmp = self.create_tempdir().full_path
    folder = _small_folder(os.path.join(tmp, "digits"), per_class=2)
    paths = []
    for sub in ("a", "b"):
      os.makedirs(os.path.join(tmp, sub))
      paths.append(os.path.join(tmp, sub, "m.tflite"))
      shutil.copy(_int8_model(), paths[-1])
    out = os.path.join(tmp, "out")
    result = _run("--data", folder, "--model", paths[0], "--model",
                  f"micro:{paths[1]}", "--model", paths[1], "--save_to", out)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(out, "evaluation.json"), encoding="utf8") as f:
      names = [m["name"] for m in json.load(f)["models"]]
    # The runtime tells the TFLM row apart; the two LiteRT rows need paths.
    self.assertEqual(names, [f"{paths[0]} (LiteRT)", "m.tflite (TFLM)",
                             f"{paths[1]} (LiteRT)"])
    self.assertLen(set(os.listdir(out)) - {"evaluation.md",
                                            "evaluation.json"}, 3)

  def test_tfrecords_and_saved_model_score_like_the_folder(self):
    tmp = self.create_tempdir().full_path
    folder = _small_folder(os.path.join(tmp, "digits"),
                           classes=[str(d) for d in range(10)], per_class=5)
    shard_writer.write_shards(folder, os.path.join(tmp, "shards"), "val", 2,
                              progress=False)
    exported = saved_model.save(model_source.resolve("bundled"), tmp,
                                name="sm")
    reports = []
    for data in (folder, os.path.join(tmp, "shards", "val-*")):
      out = os.path.join(tmp, f"out{len(reports)}")
      result = _run("--data", data, "--model", "bundled", "--model", exported,
                    "--save_to", out, "--batch_size", "7")
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      with open(os.path.join(out, "evaluation.json"), encoding="utf8") as f:
        reports.append(json.load(f))
    for report in reports:
      self.assertEqual(report["images"], 50)
      self.assertEqual(report["models"][1]["kind"], "saved_model")
      self.assertEqual(report["top1_agreement"][0][1], 1.0)
    # Same images in a folder or in records: the same confusion matrices.
    self.assertEqual([m["confusion"] for m in reports[0]["models"]],
                     [m["confusion"] for m in reports[1]["models"]])


class BadInputTest(parameterized.TestCase):

  def _assert_error(self, says, *args):
    out = os.path.join(self.create_tempdir().full_path, "report")
    result = _run(*args, "--save_to", out)
    self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
    errors = tools.error_lines(result)
    self.assertLen(errors, 1, result.stderr)
    self.assertIn(says, errors[0])
    self.assertNotIn("Traceback", result.stderr)
    self.assertFalse(os.path.exists(out))

  def _file(self, name, content):
    path = os.path.join(self.create_tempdir().full_path, name)
    with open(path, "wb") as f:
      f.write(content)
    return path

  @parameterized.named_parameters(
      ("missing_tflite", "/nonexistent/m.tflite", "no such .tflite file"),
      ("missing_h5", "/nonexistent/m.h5", "no such file"),
      ("corrupt_tflite", b"not a flatbuffer at all", "not a TFLite model"),
      ("empty_tflite", b"", "too short for a TFLite model"),
      ("corrupt_h5", b"\x89HDF\r\n garbage", "m.h5"),
      ("corrupt_saved_model", "saved_model.pb", "cannot load this SavedModel"))
  def test_bad_model(self, model, says):
    if isinstance(model, bytes):
      model = self._file("m.h5" if "HDF" in str(model) else "m.tflite", model)
    elif model == "saved_model.pb":
      model = os.path.dirname(self._file(model, b"\x00garbage"))
    self._assert_error(says, "--data", HELDOUT, "--model", model)

  def test_empty_folder(self):
    self._assert_error("no class sub-folders", "--data",
                       self.create_tempdir().full_path, "--model", "bundled")

  def test_unreadable_images_only(self):
    root = self.create_tempdir().full_path
    for c in ("3", "7"):
      os.makedirs(os.path.join(root, c))
      with open(os.path.join(root, c, "x.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    self._assert_error("none of the 2 images could be read", "--data", root,
                       "--model", "bundled")

  def test_unknown_labels(self):
    root = self.create_tempdir().full_path
    _small_folder(root, per_class=2)
    os.rename(os.path.join(root, "3"), os.path.join(root, "cat"))
    self._assert_error("'cat' are not among the labels", "--data", root,
                       "--model", "bundled")

  def test_truncated_tfrecord(self):
    tmp = self.create_tempdir().full_path
    folder = _small_folder(os.path.join(tmp, "digits"))
    shards = os.path.join(tmp, "shards")
    shard_writer.write_shards(folder, shards, "val", 2, progress=False)
    shard = os.path.join(shards, "val-00001-of-00002")
    with open(shard, "rb") as f:
      data = f.read()
    with open(shard, "wb") as f:
      f.write(data[:len(data) - 100])
    self._assert_error("val-00001-of-00002 is truncated or damaged", "--data",
                       os.path.join(shards, "val-*"), "--model", "bundled")

  def test_no_such_data(self):
    self._assert_error("no such folder or TFRecord file", "--data",
                       "/nonexistent/dir", "--model", "bundled")


if __name__ == "__main__":
  absltest.main()
