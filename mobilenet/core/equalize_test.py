"""Equalization keeps the float network and shrinks per-tensor scales.

The model is a random one made lopsided the way trained ones are: some
channels of the conv before a depthwise are scaled down and the depthwise
weights up by the inverse factor, so their folded weights tower over the
rest.  Equalization must undo that without changing the float outputs on
its calibration images, and without widening the activation or the
preceding conv's int8 ranges."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from mobilenet.core import arch
from mobilenet.core import equalize
from mobilenet.core import forward
from mobilenet.core import params as params_lib
from mobilenet.core import qat

ALPHA, SIZE = 0.35, 32


def _lopsided(net, seed=0):
  """Random params with realistic BN statistics (one training-mode pass),
  then channels of two pairs skewed 30x and 100x."""
  rng = np.random.default_rng(seed)
  params = params_lib.init(net, seed=seed)
  images = rng.uniform(-1, 1, (64, SIZE, SIZE, 3)).astype(np.float32)
  _, stats = forward.apply(params, images, alpha=ALPHA, training=True)
  params = params_lib.to_numpy(params_lib.with_bn_stats(
      params, {k: {n: v.numpy() for n, v in s.items()}
               for k, s in stats.items()}))
  params = {k: dict(v) for k, v in params.items()}
  for (conv, dw), f in zip(equalize.pairs(net)[:2], (30.0, 100.0)):
    s = np.ones(conv.out_channels, np.float32)
    s[::3] = 1 / f
    for key in ("gamma", "beta"):
      params[conv.bn_name][key] = params[conv.bn_name][key] * s
    params[dw.name]["depthwise_kernel"] = (
        params[dw.name]["depthwise_kernel"] / s[None, None, :, None])
  return params


def _relu_outputs(params, images, names):
  out = {}
  forward.apply(params, images, alpha=ALPHA,
                observe=lambda l, x: out.__setitem__(l.name, np.asarray(x))
                if l.name in names else None)
  return out


class EqualizeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.net = arch.derive(ALPHA, 3, 1000)
    cls.params = _lopsided(cls.net)
    rng = np.random.default_rng(1)
    cls.images = rng.uniform(-1, 1, (40, SIZE, SIZE, 3)).astype(np.float32)
    cls.maxima = equalize.activation_maxima(cls.params, cls.images, ALPHA,
                                            cls.net)
    cls.eq, cls.report = equalize.equalize(cls.params, cls.net, cls.maxima)

  def test_pairs_are_every_depthwise_after_a_relu6_conv(self):
    pairs = equalize.pairs(self.net)
    self.assertLen(pairs, 17)
    self.assertEqual((pairs[0][0].name, pairs[0][1].name),
                     ("Conv1", "expanded_conv_depthwise"))
    self.assertEqual((pairs[1][0].name, pairs[1][1].name),
                     ("block_1_expand", "block_1_depthwise"))

  def test_maxima_are_the_relu6_outputs_maxima(self):
    names = {a.relu_name for a, _ in equalize.pairs(self.net)}
    outs = _relu_outputs(self.params, self.images, names)
    for name in names:
      np.testing.assert_array_equal(self.maxima[name],
                                    outs[name].max(axis=(0, 1, 2)))

  def test_float_outputs_unchanged_on_calibration_images(self):
    before = forward.apply(self.params, self.images, alpha=ALPHA).numpy()
    after = forward.apply(self.eq, self.images, alpha=ALPHA).numpy()
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)

  def test_activations_move_into_the_conv_before_exactly(self):
    """Each equalized ReLU6 output is s_c times the old one, with the
    depthwise kernel divided by the same s_c."""
    for conv, dw in equalize.pairs(self.net)[:2]:
      s = (self.params[dw.name]["depthwise_kernel"] /
           self.eq[dw.name]["depthwise_kernel"])[0, 0, :, 0]
      old = _relu_outputs(self.params, self.images, {conv.relu_name})
      new = _relu_outputs(self.eq, self.images, {conv.relu_name})
      np.testing.assert_allclose(new[conv.relu_name],
                                 old[conv.relu_name] * s, rtol=1e-5,
                                 atol=1e-6)
      self.assertGreater(s.max(), 10.0)  # the skew was undone

  def test_skewed_layers_even_out_and_no_int8_range_grows(self):
    rows = {r["layer"]: r for r in self.report}
    for _, dw in equalize.pairs(self.net)[:2]:
      self.assertLess(rows[dw.name]["spread_after"],
                      rows[dw.name]["spread_before"] / 10)
    for row in self.report:
      self.assertLessEqual(row["spread_after"],
                           row["spread_before"] * (1 + 1e-6))
    new_max = equalize.activation_maxima(self.eq, self.images, ALPHA,
                                         self.net)
    old_f = params_lib.fold_batch_norm(self.params, self.net)
    new_f = params_lib.fold_batch_norm(self.eq, self.net)
    for conv, dw in equalize.pairs(self.net):
      self.assertLessEqual(new_max[conv.relu_name].max(),
                           self.maxima[conv.relu_name].max() * (1 + 1e-5))
      for name, key in ((conv.name, "kernel"), (dw.name, "depthwise_kernel")):
        self.assertLessEqual(np.abs(new_f[name][key]).max(),
                             np.abs(old_f[name][key]).max() * (1 + 1e-5))

  def test_per_tensor_weights_lose_less(self):
    """Weights-only per-tensor fake quantization (qat.py's int8 grid) moves
    the skewed depthwise convs' outputs less after equalization."""
    options = qat.Options("per_tensor", {})
    names = {dw.relu_name for _, dw in equalize.pairs(self.net)[:2]}
    for name in names:
      errors = []
      for params in (self.params, self.eq):
        ref = _relu_outputs(params, self.images, names)[name]
        q = {}
        forward.apply(params, self.images, alpha=ALPHA, qat=options,
                      observe=lambda l, x: q.__setitem__(l.name, np.asarray(x))
                      if l.name == name else None)
        errors.append(np.sqrt(np.mean((q[name] - ref) ** 2) /
                              np.mean(ref ** 2)))
      self.assertLess(errors[1], errors[0] / 2, name)

  def test_summary_and_table(self):
    s = equalize.summary(self.report, len(self.images))
    self.assertEqual(s["calibration_images"], 40)
    self.assertLen(s["layers"], 17)
    self.assertIn("| block_1_depthwise |", equalize.table(self.report))


if __name__ == "__main__":
  tf.config.experimental.enable_op_determinism()
  absltest.main()
