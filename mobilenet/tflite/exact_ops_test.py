"""exact_ops against hand-derived cases of the C++ semantics and against
brute-force references in Python's unbounded integers and exact fractions
(no shared code with the TensorFlow implementation)."""

import fractions
import math

from absl.testing import absltest
import numpy as np

from mobilenet.tflite import exact_ops

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def c_div(n, d):
  """C's integer division: truncates toward zero."""
  q = abs(n) // abs(d)
  return q if (n >= 0) == (d > 0) else -q


def round_half_away(f):
  """A Fraction rounded to the nearest integer, ties away from zero."""
  sign = -1 if f < 0 else 1
  return sign * math.floor(abs(f) + fractions.Fraction(1, 2))


def ref_quantize_multiplier(real):
  if real == 0:
    return 0, 0
  f = fractions.Fraction(real)
  shift = 0
  while f >= 1:
    f, shift = f / 2, shift + 1
  while f < fractions.Fraction(1, 2):
    f, shift = f * 2, shift - 1
  q = round_half_away(f * (1 << 31))
  if q == 1 << 31:
    q, shift = q // 2, shift + 1
  if shift < -31:
    return 0, 0
  return q, shift


def ref_srdhm(a, b):
  if a == b == I32_MIN:
    return I32_MAX
  ab = a * b
  nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
  return c_div(ab + nudge, 1 << 31)


def ref_rdbpot(x, e):
  return round_half_away(fractions.Fraction(x, 1 << e))


def ref_mbqm(x, m, shift):
  left, right = max(shift, 0), max(-shift, 0)
  return ref_rdbpot(ref_srdhm(x * (1 << left), m), right)


def values(t):
  return [int(v) for v in np.asarray(t).reshape(-1)]


class QuantizeMultiplierTest(absltest.TestCase):

  def test_hand_cases(self):
    q = lambda r: tuple(int(v) for v in exact_ops.quantize_multiplier(r))
    self.assertEqual(q(0.5), (1 << 30, 0))
    self.assertEqual(q(1.0), (1 << 30, 1))
    self.assertEqual(q(0.75), (3 << 29, 0))
    self.assertEqual(q(0.0), (0, 0))
    # Below 2^-32 every bit would shift out: flushed to zero.
    self.assertEqual(q(2.0 ** -33), (0, 0))
    # A mantissa of 1 - 2^-33 rounds up to 2^31: halved, shift + 1.
    self.assertEqual(q((1 - 2.0 ** -33) * 8), (1 << 30, 4))
    # Exactly half a step above 2^30 / 2^31: rounds away from zero.
    self.assertEqual(q((2 ** 30 + 0.5) / 2 ** 31), (2 ** 30 + 1, 0))

  def test_random_reals_match_exact_fractions(self):
    rng = np.random.default_rng(0)
    reals = np.concatenate([rng.uniform(0, 1, 500) * 10.0 ** rng.integers(
        -12, 3, 500), [1e-10, 3.0, 2.0 ** -31, 0.999999999]])
    got_m, got_s = exact_ops.quantize_multiplier(reals)
    for r, m, s in zip(reals, got_m, got_s):
      self.assertEqual((int(m), int(s)), ref_quantize_multiplier(float(r)),
                       msg=repr(r))


class FixedPointTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(1)
    edge = [I32_MIN, I32_MIN + 1, -1, 0, 1, I32_MAX, 1 << 30, -(1 << 30)]
    self.a = np.concatenate([rng.integers(I32_MIN, I32_MAX, 2000), edge * 8])
    self.b = np.concatenate([rng.integers(I32_MIN, I32_MAX, 2000),
                             np.repeat(edge, 8)])

  def test_srdhm_hand_cases(self):
    f = lambda a, b: int(exact_ops.saturating_rounding_doubling_high_mul(a, b))
    self.assertEqual(f(I32_MIN, I32_MIN), I32_MAX)   # the one saturation
    self.assertEqual(f(1 << 30, 1 << 30), 1 << 29)   # 0.5 * 0.5
    self.assertEqual(f(-1, 1 << 30), 0)              # -0.5 rounds to 0
    self.assertEqual(f(1, 1 << 30), 1)               # +0.5 rounds up
    self.assertEqual(f(-3, 1 << 30), -1)             # -1.5 -> -1 (nudge)

  def test_srdhm_matches_python_integers(self):
    got = values(exact_ops.saturating_rounding_doubling_high_mul(self.a,
                                                                 self.b))
    want = [ref_srdhm(int(a), int(b)) for a, b in zip(self.a, self.b)]
    self.assertEqual(got, want)

  def test_rounding_divide_by_pot(self):
    f = lambda x, e: int(exact_ops.rounding_divide_by_pot(x, e))
    self.assertEqual(f(5, 1), 3)      # 2.5 -> 3
    self.assertEqual(f(-5, 1), -3)    # -2.5 -> -3: ties away from zero
    self.assertEqual(f(-6, 2), -2)    # -1.5 -> -2
    self.assertEqual(f(-5, 2), -1)    # -1.25 -> -1
    self.assertEqual(f(7, 0), 7)
    for e in (0, 1, 5, 17, 31):
      got = values(exact_ops.rounding_divide_by_pot(self.a, e))
      self.assertEqual(got, [ref_rdbpot(int(x), e) for x in self.a], msg=e)

  def test_multiply_by_quantized_multiplier(self):
    rng = np.random.default_rng(2)
    x = rng.integers(-(1 << 24), 1 << 24, 3000)
    m = rng.integers(1 << 30, 1 << 31, 3000)
    shift = rng.integers(-31, 3, 3000)
    got = values(exact_ops.multiply_by_quantized_multiplier(x, m, shift))
    want = [ref_mbqm(int(a), int(b), int(s)) for a, b, s in zip(x, m, shift)]
    self.assertEqual(got, want)
    # And it is x * m * 2^(shift - 31) to within a step.
    real = x * (m / 2.0 ** 31) * 2.0 ** shift
    self.assertLessEqual(np.abs(np.asarray(got) - real).max(), 1.0)

  def test_single_rounding_differs_by_at_most_one(self):
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 20), 1 << 20, 20000)
    m = rng.integers(1 << 30, 1 << 31, 20000)
    shift = rng.integers(-12, 0, 20000)
    single = np.asarray(exact_ops.multiply_by_quantized_multiplier_single_rounding(
        x, m, shift))
    want = [(int(a) * int(b) + (1 << (30 - int(s)))) >> (31 - int(s))
            for a, b, s in zip(x, m, shift)]
    self.assertEqual(values(single), want)
    double = np.asarray(exact_ops.multiply_by_quantized_multiplier(x, m, shift))
    diff = np.abs(single - double)
    self.assertEqual(diff.max(), 1)   # they do disagree, by one step only
    self.assertGreater(np.count_nonzero(diff), 0)

  def test_count_leading_zeros(self):
    xs = [0, 1, 2, 3, 255, 1 << 19, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
    got = values(exact_ops.count_leading_zeros_u32(xs))
    self.assertEqual(got, [32 - x.bit_length() for x in xs])


class FixedPointFunctionsTest(absltest.TestCase):

  def test_exp_on_negative_values(self):
    # Q5.26 inputs from 0 down to -31.
    raw = -np.concatenate([[0, 1, 1 << 24, 1 << 26, 3 << 26],
                           np.random.default_rng(4).integers(0, 31 << 26,
                                                             3000)])
    got = np.asarray(exact_ops.exp_on_negative_values(raw, 5), np.float64)
    self.assertEqual(int(got[0]), I32_MAX)   # exp(0) = One()
    want = np.exp(raw / 2.0 ** 26) * 2.0 ** 31
    # gemmlowp's exp is a fixed-point approximation good to ~2^-22 (the
    # bit-exact check of softmax is against TFLite itself, in
    # exact_forward_test); a wrong constant or bit would be far off.
    self.assertLess(np.abs(got - want).max(), 2.0 ** (31 - 21))

  def test_one_over_one_plus_x(self):
    x = np.linspace(0, 1 - 2.0 ** -20, 2001)
    raw = np.round(x * 2 ** 31).astype(np.int64)
    got = np.asarray(exact_ops.one_over_one_plus_x_for_x_in_0_1(raw),
                     np.float64) / 2.0 ** 31
    np.testing.assert_allclose(got, 1 / (1 + raw / 2.0 ** 31), atol=1e-8)


if __name__ == "__main__":
  absltest.main()
