"""Full parity sweep: 6 alphas x the 5 ImageNet input sizes (manual, large)."""

from absl import logging
from absl.testing import absltest
from absl.testing import parameterized

from mobilenet.core import arch
from mobilenet.core import forward_test


class SweepTest(parameterized.TestCase):

  @parameterized.product(alpha=arch.KERAS_ALPHAS, size=arch.KERAS_ROWS)
  def test_parity(self, alpha, size):
    errors = forward_test.parity_errors(alpha, size)
    logging.info("alpha=%s size=%d max|d| logits=%.3g softmax=%.3g "
                 "folded=%.3g", alpha, size, *errors)
    print(f"SWEEP alpha={alpha} size={size} logits={errors[0]:.3g} "
          f"softmax={errors[1]:.3g} folded={errors[2]:.3g}", flush=True)
    for e in errors:
      self.assertLessEqual(e, forward_test.TOL)


if __name__ == "__main__":
  absltest.main()
