"""Builds a MobileNetV2 through @mobilenet_v2//mobilenet/core and runs it."""

import numpy as np
from absl.testing import absltest

from mobilenet.core import arch
from mobilenet.core import forward
from mobilenet.core import params as params_lib


class ConsumerTest(absltest.TestCase):

  def test_forward_from_dependency(self):
    net = arch.derive(alpha=0.35, classes=5)
    weights = params_lib.init(net, seed=1)
    model = forward.build(weights, alpha=0.35, input_shape=(64, 64, 3), classes=5)
    probs = np.asarray(model(np.zeros((1, 64, 64, 3), np.float32)))
    self.assertEqual(probs.shape, (1, 5))
    self.assertAlmostEqual(float(probs.sum()), 1.0, places=5)
    # The folded graph and the unfolded functional forward agree.
    unfolded = forward.apply(weights, np.zeros((1, 64, 64, 3), np.float32), alpha=0.35)
    np.testing.assert_allclose(probs, np.asarray(unfolded), atol=1e-5)


if __name__ == "__main__":
  absltest.main()
