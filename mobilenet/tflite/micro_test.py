"""The micro artifact //mobilenet/tflite:mobilenet_v2_micro against independent
references: the TFLM interpreter, LiteRT's reference kernels, the kernels
compiled into the installed TFLM, and the files on disk."""

import hashlib
import json
import os
import re

import numpy as np
from absl.testing import absltest

from mobilenet.core import labels as labels_lib
from mobilenet.core import preprocess
from mobilenet.testing import tools
from mobilenet.tflite import micro_check
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import runtime

CONVERT = "mobilenet/tflite/convert.py"
NAME = "mobilenet_v2_micro"
OUTPUTS = (".tflite", ".json", "_model_data.h", "_model_data.cc",
           "_op_resolver.h")


def _artifact(suffix):
  return runtime.built_artifact(NAME + suffix)


def _read(suffix, mode="rb"):
  with open(_artifact(suffix), mode) as f:
    return f.read()


class MicroArtifactTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tflite = _read(".tflite")
    cls.meta = json.loads(_read(".json", "r"))
    cls.micro = cls.meta["micro"]

  def test_tflm_is_bit_identical_to_litert_reference_kernels(self):
    root = labels_lib.data_path("mnist_heldout")
    paths = preprocess.find_images(root)
    self.assertLen(paths, 1000)
    truth = np.array([os.path.basename(os.path.dirname(p)) for p in paths])
    tflm = micro_runtime.MicroModel(self.tflite)
    ref = runtime.Model(self.tflite, reference_kernels=True)
    x = tflm.quantize_pixels(tflm.load_images(paths),
                             self.meta["normalization"])
    self.assertEqual(x.dtype, np.int8)
    ours, theirs = tflm.run_raw(x), ref.run_raw(x)
    self.assertEqual(ours.dtype, np.int8)
    same = int(np.sum(np.all(ours == theirs, axis=1)))
    self.assertEqual(same, len(paths), "images with a differing output")
    accuracy = np.mean(np.array(self.meta["labels"])[ours.argmax(1)] == truth)
    print(f"TFLM vs LiteRT reference: {same}/{len(paths)} identical; "
          f"TFLM accuracy {accuracy:.4f}")
    # Integer reference kernels: the same on every CPU.  Measured 98.1 %
    # against the float model's recorded 98.0 % (model_source_test checks
    # that number with keras.applications); int8 may cost or gain a few
    # digits, never 5.
    with open(labels_lib.data_path("bundled/mnist_mobilenet_v2.json"),
              encoding="utf-8") as f:
      recorded = json.load(f)["heldout_accuracy"]
    self.assertAlmostEqual(accuracy, recorded, delta=0.005)

  def test_sidecar_arena_is_the_smallest_tflm_runs_in(self):
    arena = self.micro["arena_bytes"]
    x = np.full((1, 48, 48, 1), 7, np.int8)
    fits = micro_runtime.MicroModel(self.tflite, arena_size=arena)
    roomy = micro_runtime.MicroModel(self.tflite)
    np.testing.assert_array_equal(fits.run_raw(x), roomy.run_raw(x))
    with self.assertRaisesRegex(micro_runtime.MicroRuntimeError,
                                "cannot load the model"):
      micro_runtime.MicroModel(self.tflite, arena_size=arena - 1)
    # TFLM's own report of what it keeps after initialising (16-byte slack:
    # it aligns from both ends of the arena).
    roomy.run_raw(x)
    report = roomy.allocations()
    self.assertEqual(report["head"], self.micro["arena_activation_bytes"])
    self.assertEqual(report["tail"], self.micro["arena_persistent_bytes"])
    self.assertLessEqual(report["total"], arena + 15)
    self.assertGreater(self.micro["recommended_arena_bytes"], arena)
    self.assertEqual(self.micro["flash_bytes"],
                     os.path.getsize(_artifact(".tflite")))

  def test_op_resolver_registers_exactly_the_models_ops(self):
    header = _read("_op_resolver.h", "r")
    added = re.findall(r"resolver\.(Add\w+)\(\)", header)
    # LiteRT's own reading of the model, not ours.
    ops = runtime.Model(self.tflite, use_default_delegates=False).op_counts()
    self.assertCountEqual(added, [micro_check.TFLM_OPS[o] for o in ops])
    self.assertIn(f"constexpr unsigned int kOpCount = {len(ops)};", header)
    self.assertIn("tflite::MicroMutableOpResolver<kOpCount>", header)
    self.assertEqual(self.micro["op_resolver"],
                     f"tflite::MicroMutableOpResolver<{len(ops)}>")

  def test_op_table_names_kernels_compiled_into_tflm(self):
    # Each MicroMutableOpResolver::AddX() calls tflite::Register_<OP>(); the
    # installed TFLM exports those functions (Itanium-mangled, no arguments).
    path = os.path.join(os.path.dirname(micro_runtime.tflm().__file__),
                        "_runtime.so")
    with open(path, "rb") as f:
      binary = f.read()
    exported = lambda op: f"{len(op) + 9}Register_{op}Ev".encode() in binary  # pylint: disable=unnecessary-lambda-assignment
    self.assertEqual([op for op in micro_check.TFLM_OPS if not exported(op)],
                     [])
    self.assertFalse(exported("GELU"))  # an op TFLM lacks: the probe says no

  def test_clean_conversion_reproduces_every_file(self):
    out = self.create_tempdir().full_path
    r = tools.run_tool(CONVERT, "--save_to", out, "--weights", "bundled",
                    "--target", "micro", "--name", NAME)
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertIn("TFLM arena", r.stdout)
    self.assertCountEqual(os.listdir(out), [NAME + s for s in OUTPUTS])
    for suffix in OUTPUTS:
      with open(os.path.join(out, NAME + suffix), "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
      self.assertEqual(got, hashlib.sha256(_read(suffix)).hexdigest(), suffix)


if __name__ == "__main__":
  absltest.main()
