"""model_diagram draws one box per layer group and writes a real PNG."""

import os

from absl.testing import absltest
from PIL import Image

from mobilenet.core import arch
from tools import model_diagram


class ModelDiagramTest(absltest.TestCase):

  def test_png(self):
    net = arch.derive(0.35, 1, 10)
    items = model_diagram.boxes(net, 32)
    self.assertLen(items, 17 + 5)  # input, stem, 17 blocks, head, pool, fc
    self.assertEqual(sum(r for _, _, r in items), 10)  # residual blocks
    path = os.path.join(self.create_tempdir().full_path, "m.png")
    model_diagram.draw(net, 32, path)
    with Image.open(path) as im:
      self.assertEqual(im.format, "PNG")
      self.assertGreater(im.height, im.width)

  def test_units_and_detail_come_from_the_layer_sequence(self):
    net = arch.derive(1.0)
    units = model_diagram.units(net, 224)
    self.assertEqual(sum(len(group) for _, group in units), len(net.layers))
    self.assertEqual([scope for scope, _ in units][:3],
                     ["Conv1", "expanded_conv", "block_1"])
    self.assertEqual(model_diagram._detail_scope(net), "block_2")  # pylint: disable=protected-access
    with self.assertRaisesRegex(ValueError, "no unit"):
      model_diagram.draw(net, 224, "unused.png", detail="block_99")
    self.assertEqual(set(model_diagram._KINDS), set(arch.LAYER_KINDS))  # pylint: disable=protected-access


if __name__ == "__main__":
  absltest.main()
