"""Patched models against the unpatched ones in the real interpreters: TFLM
and LiteRT's reference kernels give bit-identical int8 outputs, on the
held-out digits (the //mobilenet/tflite:mobilenet_v2_micro_patched artifact)
and on random inputs to a random-weight RGB model, cut at stages with odd
sizes; LiteRT's own reading of the file shows weights stored once and
copies that keep their input's quantization."""

import hashlib
import json
import os

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mobilenet.core import arch
from mobilenet.core import labels as labels_lib
from mobilenet.core import preprocess
from mobilenet.testing import models
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import patch_search
from mobilenet.tflite import patches
from mobilenet.tflite import runtime

SIZE = 72  # 72 -> 36 -> 18 -> 9 -> 5: even and odd stage outputs
COPIES = ("STRIDED_SLICE", "PAD", "CONCATENATION")


def _outputs(tflite, x):
  return (micro_runtime.MicroModel(tflite).run_raw(x),
          runtime.Model(tflite, reference_kernels=True).run_raw(x))


def _ops(tflite):
  interp = runtime.Model(tflite, use_default_delegates=False).interpreter
  details = {t["index"]: t for t in interp.get_tensor_details()}
  return interp._get_ops_details(), details  # pylint: disable=protected-access


def _weight_digests(tflite):
  """sha256 of every conv's weight and bias data, as LiteRT reads them."""
  ops, _ = _ops(tflite)
  interp = runtime.Model(tflite, use_default_delegates=False).interpreter
  out = set()
  for op in ops:
    if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
      for i in op["inputs"][1:]:
        out.add(hashlib.sha256(interp.get_tensor(i).tobytes()).hexdigest())
  return out


class RandomModelTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tflite = models.live_random_int8(0.35, SIZE, 3, 10).tflite
    rng = np.random.default_rng(0)
    cls.x = rng.integers(-128, 128, (6, SIZE, SIZE, 3), dtype=np.int8)
    cls.want_tflm, cls.want_ref = _outputs(cls.tflite, cls.x)
    cls.net = arch.derive(0.35, 3, 10)

  @parameterized.parameters("2x3@block_1", "3x3@block_3", "5x1@block_6",
                            "4x2@expanded_conv", "1x2@block_2",
                            "2x2@block_1,3x1@block_3,1x5@block_6")
  def test_bit_identical_in_tflm_and_litert_reference(self, spec):
    stages = patch_search.parse(spec)
    patched = patches.patch(self.tflite, stages)
    tflm, ref = _outputs(patched, self.x)
    np.testing.assert_array_equal(tflm, self.want_tflm)
    np.testing.assert_array_equal(ref, self.want_ref)
    # Not a degenerate comparison: the inputs give different outputs.
    self.assertGreater(len({r.tobytes() for r in self.want_ref}), 1)
    counts = runtime.Model(patched, use_default_delegates=False).op_counts()
    base = runtime.Model(self.tflite, use_default_delegates=False).op_counts()
    self.assertEqual(counts["CONCATENATION"], sum(
        (rows > 1) + rows * (cols > 1) for rows, cols, _ in stages))
    self.assertGreater(counts["CONV_2D"], base["CONV_2D"])
    # Weights and biases once: the same set of constant arrays.
    self.assertEqual(_weight_digests(patched), _weight_digests(self.tflite))
    # Halos recompute, never skip: more MACs than the network has.
    self.assertGreater(patches.macs(patched),
                       arch.count_macs(self.net, SIZE, SIZE))

  def test_copies_keep_their_inputs_quantization(self):
    patched = patches.patch(self.tflite, [(3, 3, "block_3")])
    ops, tensors = _ops(patched)
    seen = 0
    for op in ops:
      if op["op_name"] in COPIES:
        q_out = tensors[op["outputs"][0]]["quantization"]
        for i in (op["inputs"] if op["op_name"] == "CONCATENATION"
                  else op["inputs"][:1]):
          self.assertEqual(tensors[i]["quantization"], q_out, op)
        seen += 1
    self.assertGreater(seen, 9)

  def test_stages_out_of_order_are_refused(self):
    with self.assertRaisesRegex(patches.GridError,
                                "block_1 does not come after block_3"):
      patches.patch(self.tflite, [(3, 3, "block_3"), (2, 2, "block_1")])

  def test_mac_count_matches_the_architecture(self):
    # The flatbuffer's count against arch's independent one, unpatched.
    self.assertEqual(patches.macs(self.tflite),
                     arch.count_macs(self.net, SIZE, SIZE))


class BundledArtifactTest(absltest.TestCase):
  """//mobilenet/tflite:mobilenet_v2_micro_patched (--patches=auto) against
  //mobilenet/tflite:mobilenet_v2_micro: the same weights, unpatched."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.files = {}
    for name in ("mobilenet_v2_micro", "mobilenet_v2_micro_patched"):
      with open(runtime.built_artifact(name + ".tflite"), "rb") as f:
        data = f.read()
      with open(runtime.built_artifact(name + ".json"), encoding="utf-8") as f:
        cls.files[name] = (data, json.load(f))

  def test_heldout_digits_bit_identical(self):
    paths = preprocess.find_images(labels_lib.data_path("mnist_heldout"))
    self.assertLen(paths, 1000)
    plain, meta = self.files["mobilenet_v2_micro"]
    patched, _ = self.files["mobilenet_v2_micro_patched"]
    model = micro_runtime.MicroModel(plain)
    x = model.quantize_pixels(model.load_images(paths), meta["normalization"])
    want_tflm, want_ref = _outputs(plain, x)
    tflm, ref = _outputs(patched, x)
    self.assertEqual(int(np.sum(np.all(tflm == want_tflm, axis=1))), 1000)
    self.assertEqual(int(np.sum(np.all(ref == want_ref, axis=1))), 1000)

  def test_sidecar_reports_both_builds(self):
    plain, plain_meta = self.files["mobilenet_v2_micro"]
    patched, meta = self.files["mobilenet_v2_micro_patched"]
    p = meta["micro"]["patches"]
    self.assertRegex(p["chosen_by"], r"^auto: ")
    # auto patched it: in less arena than the unpatched artifact measured.
    self.assertLess(meta["micro"]["arena_bytes"],
                    plain_meta["micro"]["arena_bytes"])
    self.assertEqual(meta["tflite_sha256"],
                     hashlib.sha256(patched).hexdigest())
    self.assertEqual(meta["micro"]["flash_bytes"], len(patched))
    unpatched = {k: plain_meta["micro"][k] for k in p["unpatched"]
                 if k != "macs"}
    self.assertEqual(dict(p["unpatched"], macs=None),
                     dict(unpatched, macs=None))
    net = arch.derive(0.35, 1, 10)
    self.assertEqual(p["unpatched"]["macs"], arch.count_macs(net, 48, 48))
    self.assertGreater(p["macs"], p["unpatched"]["macs"])
    # The sidecar's arena is the smallest TFLM builds the patched model in.
    arena = meta["micro"]["arena_bytes"]
    micro_runtime.MicroModel(patched, arena_size=arena)
    with self.assertRaises(micro_runtime.MicroRuntimeError):
      micro_runtime.MicroModel(patched, arena_size=arena - 1)

  def test_op_resolver_registers_the_copy_ops(self):
    path = runtime.built_artifact("mobilenet_v2_micro_patched_op_resolver.h")
    with open(path, encoding="utf-8") as f:
      header = f.read()
    for method in ("AddStridedSlice", "AddPad", "AddConcatenation"):
      self.assertIn(f"resolver.{method}()", header)
    ops = runtime.Model(self.files["mobilenet_v2_micro_patched"][0],
                        use_default_delegates=False).op_counts()
    self.assertIn(f"kOpCount = {len(ops)};", header)
    self.assertTrue(os.path.exists(runtime.built_artifact(
        "mobilenet_v2_micro_patched_model_data.cc")))


if __name__ == "__main__":
  absltest.main()
