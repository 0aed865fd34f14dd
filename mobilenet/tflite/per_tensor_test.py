"""Per-tensor int8 (convert --granularity=per_tensor), the genrule artifact
beside the per-channel one, against independent references: LiteRT's own
reading of the weight scales, TFLite Micro's outputs, the sidecars on disk."""

import hashlib
import json
import os

from absl.testing import absltest
from ai_edge_litert import interpreter as litert
import numpy as np

from mobilenet.core import labels
from mobilenet.core import preprocess
from mobilenet.tflite import exact_forward
from mobilenet.tflite import micro_runtime
from mobilenet.tflite import runtime

PER_TENSOR = "mobilenet_v2_int8_per_tensor"
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _weight_scales(path):
  """[(op name, weight scales, bias scales, output channels)] of every
  weighted op, as the LiteRT interpreter reports them."""
  # No default delegates: XNNPACK, once allocated, reports a per-tensor
  # FULLY_CONNECTED weight with its one scale repeated per output channel.
  it = litert.Interpreter(
      model_path=path, experimental_op_resolver_type=(
          litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  it.allocate_tensors()
  details = {d["index"]: d for d in it.get_tensor_details()}
  rows = []
  for op in it._get_ops_details():  # pylint: disable=protected-access
    if op["op_name"] not in WEIGHTED:
      continue
    w, b = (details[i]["quantization_parameters"] for i in op["inputs"][1:3])
    out = details[op["outputs"][0]]
    np.testing.assert_array_equal(w["zero_points"], 0)  # symmetric weights
    rows.append((op["op_name"], w["scales"], b["scales"],
                 int(out["shape"][-1])))
  return rows


def _sidecar(path):
  with open(os.path.splitext(path)[0] + ".json", encoding="utf-8") as f:
    return json.load(f)


class PerTensorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.per_tensor = runtime.built_artifact(PER_TENSOR + ".tflite")
    cls.per_channel = runtime.default_model()

  def test_one_scale_per_weight_tensor_vs_one_per_output_channel(self):
    pt, pc = _weight_scales(self.per_tensor), _weight_scales(self.per_channel)
    # 35 CONV_2D, 17 DEPTHWISE_CONV_2D, 1 FULLY_CONNECTED in both.
    self.assertLen(pt, 53)
    self.assertEqual([r[0] for r in pt], [r[0] for r in pc])
    for name, w, b, channels in pt:
      self.assertLen(w, 1, name)
      # Bias scale = input scale * the one weight scale.
      self.assertLen(b, 1, name)
    for name, w, b, channels in pc:
      self.assertLen(w, channels, name)
      self.assertLen(b, channels, name)
    # Per-channel scales really differ within a layer (not one value
    # repeated), so the two models are not the same thing in two layouts.
    self.assertGreater(np.mean([len(np.unique(w)) > 1 for _, w, _, _ in pc]),
                       0.9)

  def test_exact_forward_equals_tflm_bit_for_bit(self):
    model = exact_forward.ExactModel(self.per_tensor)
    paths = preprocess.find_images(labels.data_path("mnist_heldout"))[::20]
    x = model.quantize_pixels(model.load_images(paths), "tf")
    self.assertLen(x, 50)  # five digits of each class
    ours = model.run_raw(x)
    np.testing.assert_array_equal(
        ours, micro_runtime.MicroModel(self.per_tensor).run_raw(x))
    np.testing.assert_array_equal(
        ours, runtime.Model(self.per_tensor,
                            reference_kernels=True).run_raw(x))
    # Real predictions, not a flat output: most of the digits are read right.
    truth = [os.path.basename(os.path.dirname(p)) for p in paths]
    names = np.array(_sidecar(self.per_tensor)["labels"])
    self.assertGreater(np.mean(names[ours.argmax(1)] == truth), 0.8)

  def test_sidecars_record_the_granularity(self):
    for path, granularity in ((self.per_tensor, "per_tensor"),
                              (self.per_channel, "per_channel")):
      with self.subTest(granularity):
        meta = _sidecar(path)
        self.assertEqual(meta["granularity"], granularity)
        self.assertEqual(meta["weights_quantization"],
                         "int8 " + granularity.replace("_", "-"))
        with open(path, "rb") as f:
          self.assertEqual(meta["tflite_sha256"],
                           hashlib.sha256(f.read()).hexdigest())


if __name__ == "__main__":
  absltest.main()
