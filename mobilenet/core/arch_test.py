"""arch.derive() against keras.applications.MobileNetV2 itself."""

import re

from absl.testing import absltest
from absl.testing import parameterized
import keras
from keras.src.applications import mobilenet_v2 as keras_mnv2

from mobilenet.core import arch

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
_KERAS_KINDS = {"ZeroPadding2D": "pad", "Conv2D": "conv",
                "DepthwiseConv2D": "depthwise", "BatchNormalization": "bn",
                "ReLU": "relu6", "Add": "add", "GlobalAveragePooling2D": "pool",
                "GlobalMaxPooling2D": "pool", "Dense": "dense"}


def _keras_weight_shapes(model):
  """{layer: {weight basename: shape}} for layers with weights, Keras order."""
  out = {}
  for layer in model.layers:
    if layer.weights:
      shapes = {}
      for w in layer.weights:
        key = w.path.split("/")[-1]
        if isinstance(layer, keras.layers.DepthwiseConv2D):
          key = "depthwise_kernel"
        shapes[key] = tuple(w.shape)
      out[layer.name] = shapes
  return out


class ArchAgainstKerasTest(parameterized.TestCase):

  @parameterized.parameters(*ALPHAS)
  def test_layers_match_keras(self, alpha):
    model = keras.applications.MobileNetV2(
        weights=None, alpha=alpha, input_shape=(32, 32, 3), classes=7)
    net = arch.derive(alpha, classes=7)
    expected = _keras_weight_shapes(model)
    got = {k: {n: tuple(s) for n, s in v.items()}
           for k, v in net.weight_shapes().items()}
    self.assertEqual(list(got), list(expected))  # names and order
    self.assertEqual(got, expected)
    self.assertEqual(arch.count_params(net), model.count_params())

    for conv in net.convs:
      layer = model.get_layer(conv.name)
      self.assertEqual(tuple(layer.strides), (conv.stride, conv.stride))
      if conv.kernel > 1:  # 1x1 convs: "same" and "valid" coincide
        self.assertEqual(layer.padding, "valid" if conv.pad_name else "same")
    pads = {l.name for l in model.layers
            if isinstance(l, keras.layers.ZeroPadding2D)}
    self.assertEqual(pads, {c.pad_name for c in net.convs if c.pad_name})
    adds = {l.name for l in model.layers if isinstance(l, keras.layers.Add)}
    self.assertEqual(adds, {b.prefix + "add" for b in net.blocks if b.residual})

  @parameterized.parameters(
      (0.35, True, None, "softmax"), (1.0, True, None, None),
      (0.5, False, "max", "softmax"), (1.3, False, None, "softmax"))
  def test_layer_sequence_is_keras(self, alpha, top, pooling, activation):
    h, w = 33, 40
    model = keras.applications.MobileNetV2(
        weights=None, alpha=alpha, input_shape=(h, w, 3), include_top=top,
        pooling=pooling, classes=7, classifier_activation=activation)
    net = arch.derive(alpha, 3, 7, top, pooling, activation)
    costs = list(arch.layer_costs(net, h, w))
    ours = [(l, c) for l, c in zip(net.layers, costs) if l.kind != "softmax"]
    self.assertLen(ours, len(model.layers) - 1)  # Keras counts the input
    for (layer, cost), klayer in zip(ours, model.layers[1:]):
      name = klayer.name
      if layer.kind == "pool":  # unnamed in Keras: a per-session counter
        name = re.sub(r"_\d+$", "", name)
      self.assertEqual((layer.name, layer.kind),
                       (name, _KERAS_KINDS[type(klayer).__name__]))
      self.assertEqual(tuple(klayer.output.shape[1:]), cost.out_shape,
                       layer.name)
      self.assertEqual(klayer.count_params(), cost.params, layer.name)
      if layer.kind == "add":
        shortcut = klayer.input[0]._keras_history.operation.name  # pylint: disable=protected-access
        self.assertEqual(layer.shortcut, shortcut)
    softmax = [l for l in net.layers if l.kind == "softmax"]
    self.assertEqual([l.name for l in softmax],
                     ["predictions"] if top and activation else [])
    self.assertLessEqual({l.kind for l in net.layers}, set(arch.LAYER_KINDS))

  def test_no_top_and_grayscale(self):
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.5, input_shape=(40, 36, 1), include_top=False)
    net = arch.derive(0.5, input_channels=1, include_top=False)
    self.assertEqual(net.weight_shapes(), _keras_weight_shapes(model))

  def test_spatial_sizes_odd_input(self):
    h, w = 33, 47
    model = keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(h, w, 3), include_top=False)
    net = arch.derive(0.35, include_top=False)
    for cost in arch.layer_costs(net, h, w):
      if cost.kind in ("conv", "depthwise"):
        self.assertEqual(tuple(model.get_layer(cost.name).output.shape[1:]),
                         cost.out_shape, cost.name)
    self.assertEqual(arch.output_spatial_size(net, h, w),
                     tuple(model.output.shape[1:3]))

  def test_make_divisible_matches_keras(self):
    for v in range(1, 2000):
      for x in (v, v * 0.35, v * 1.3):
        self.assertEqual(arch.make_divisible(x, 8),
                         keras_mnv2._make_divisible(x, 8), x)

  def test_correct_pad_matches_keras(self):
    from keras.src.applications import imagenet_utils  # pylint: disable=g-import-not-at-top
    for h, w in ((32, 32), (33, 47), (7, 8), (3, 3)):
      x = keras.Input((h, w, 4))
      self.assertEqual(arch.correct_pad(h, w, 3),
                       imagenet_utils.correct_pad(x, 3))


class CountsTest(parameterized.TestCase):

  # Published MACs for the 224px ImageNet models (MobileNetV2 paper, TF-Slim
  # model table), in millions.
  @parameterized.parameters((0.35, 59), (0.5, 97), (0.75, 209), (1.0, 300),
                            (1.3, 509), (1.4, 582))
  def test_macs_match_published(self, alpha, mmacs):
    macs = arch.count_macs(arch.derive(alpha), 224, 224)
    self.assertAlmostEqual(macs / 1e6, mmacs, delta=mmacs * 0.01)

  def test_head_width(self):
    self.assertEqual(arch.derive(1.0).head.out_channels, 1280)
    self.assertEqual(arch.derive(0.35).head.out_channels, 1280)
    self.assertEqual(arch.derive(1.4).head.out_channels, 1792)
    self.assertEqual(arch.derive(1.4).stem.out_channels, 48)
    # Expansion width is in_channels * t, not rounded again.
    self.assertEqual(arch.derive(0.35).blocks[1].expanded_channels, 8 * 6)


class ValidationTest(parameterized.TestCase):

  @parameterized.parameters(0, -1.0, float("nan"), "1.0", None, True)
  def test_bad_alpha(self, alpha):
    with self.assertRaisesRegex(ValueError, "alpha"):
      arch.derive(alpha)

  @parameterized.parameters((31, 64), (64, 16), (0, 0), (32.0, 32))
  def test_bad_input_size(self, h, w):
    with self.assertRaisesRegex(ValueError, ">= 32"):
      arch.validate_input_size(h, w)

  def test_good_input_size(self):
    arch.validate_input_size(32, 1000)
    arch.validate_input_size(None, 32)

  def test_bad_channels_and_classes(self):
    with self.assertRaisesRegex(ValueError, "channels"):
      arch.derive(1.0, input_channels=2)
    with self.assertRaisesRegex(ValueError, "classes"):
      arch.derive(1.0, classes=0)


if __name__ == "__main__":
  absltest.main()
