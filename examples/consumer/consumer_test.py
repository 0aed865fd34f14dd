"""Builds a MobileNetV2 through @mobilenet_v2//mobilenet/core and runs it."""

import numpy as np
from absl.testing import absltest

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import ops
from mobilenet.core import params as params_lib


def _live_params(net, images, seed):
  """Keras-style init, every BN's gamma/beta and the classifier bias drawn,
  and the moving statistics set to the batch statistics of `images`:
  activations stay unit-scale, so the logits depend on the input and on
  every kernel (with the init's 1/0 statistics they fade to ~1e-11)."""
  rng = np.random.default_rng(seed)
  weights = params_lib.init(net, seed=seed)
  for name, layer in weights.items():
    if "gamma" in layer:
      n = layer["gamma"].shape
      layer.update(gamma=rng.uniform(0.5, 1.5, n), beta=rng.normal(0, 0.5, n),
                   moving_mean=np.zeros(n), moving_variance=np.zeros(n))
    elif name == "predictions":
      layer["bias"] = rng.normal(0, 0.5, layer["bias"].shape)
    for k, v in layer.items():
      layer[k] = np.asarray(v, np.float32)
  _, stats = forward.forward(weights, images, alpha=net.alpha, training=True)
  # From 0, one update leaves (1 - momentum) * the batch statistics.
  return params_lib.with_bn_stats(weights, {
      n: {k: np.asarray(v) / (1.0 - ops.BN_MOMENTUM) for k, v in s.items()}
      for n, s in stats.items()})


class ConsumerTest(absltest.TestCase):

  def test_forward_from_dependency(self):
    net = arch.derive(alpha=0.35, classes=5)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype(
        np.float32)
    weights = _live_params(net, x, seed=1)
    model = forward.build(weights, alpha=0.35, input_shape=(64, 64, 3),
                          batch_size=2, classes=5)
    probs = np.asarray(model(x))
    self.assertEqual(probs.shape, (2, 5))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # The folded graph and the unfolded functional forward agree on logits.
    folded = np.asarray(forward.build(
        weights, alpha=0.35, input_shape=(64, 64, 3), batch_size=2, classes=5,
        classifier_activation=None)(x))
    unfolded = np.asarray(forward.apply(weights, x, alpha=0.35,
                                        classifier_activation=None))
    # Not a trivial case: the logits differ between classes and images.
    self.assertGreater(np.ptp(unfolded, axis=-1).min(), 0.1)
    self.assertGreater(np.abs(unfolded[0] - unfolded[1]).max(), 0.01)
    # Folding reassociates float32 products through 52 layers whose batch
    # variances can be tiny: measured max |diff| / max |logit| 6.5e-5
    # (oneDNN on), 7.6e-5 (off); 5e-4 leaves ~7x.  A folding defect (a
    # dropped mean, gamma or epsilon) is O(1).
    rel = np.abs(folded - unfolded).max() / np.abs(unfolded).max()
    print(f"folded vs unfolded: max |diff| / max |logit| = {rel:.3g}")
    self.assertLess(rel, 5e-4)


if __name__ == "__main__":
  absltest.main()
