"""layer_table: the committed data/docs table is current, and its numbers
agree with the TFLite file itself."""

import os

import numpy as np
from absl.testing import absltest

from mobilenet.core import labels
from tools import layer_table


class LayerTableTest(absltest.TestCase):

  def test_committed_table_is_current(self):
    csv_text, md = layer_table.generate(layer_table.runtime.default_model())
    for name, text in (("layer_table.csv", csv_text), ("layer_table.md", md)):
      with open(labels.data_path(os.path.join("docs", name)),
                encoding="utf-8") as f:
        self.assertEqual(
            f.read(), text,
            f"data/docs/{name} is stale: run `tools/bazel run //tools:"
            "layer_table -- --save_to data/docs`")

  def test_params_and_shapes_match_the_flatbuffer(self):
    path = layer_table.runtime.default_model()
    model = layer_table.runtime.Model(path, use_default_delegates=False)
    rows = layer_table.rows_for(model, layer_table.runtime.read_sidecar(path))
    interp = model.interpreter
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    inputs_of = {int(op["outputs"][0]): [int(i) for i in op["inputs"]]
                 for op in interp._get_ops_details()  # pylint: disable=protected-access
                 if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                      "FULLY_CONNECTED")}
    convs = [r for r in rows if r["kind"] in ("conv", "depthwise", "dense")]
    self.assertLen(convs, 52 + 1)
    for r in convs:
      inputs = inputs_of[r["tensor_index"]]
      n = int(np.prod(tensors[inputs[1]]["shape"]))
      # Keras' convs have no bias (BN follows); the classifier has one,
      # counted from the FC op's own bias tensor.
      if r["kind"] == "dense":
        n += int(np.prod(tensors[inputs[2]]["shape"]))
      self.assertEqual(r["params"], n, r["keras_layer"])
    self.assertEqual([r["keras_layer"] for r in rows][:3],
                     ["input_1", "Conv1", "bn_Conv1"])

  def test_every_layer_kind_is_mapped(self):
    self.assertEqual(set(layer_table._KINDS),  # pylint: disable=protected-access
                     set(layer_table.arch.LAYER_KINDS))


if __name__ == "__main__":
  absltest.main()
