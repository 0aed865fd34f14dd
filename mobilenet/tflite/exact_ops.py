"""TFLite's integer requantization and fixed-point arithmetic, bit for bit.

The reference kernels of TFLite (LiteRT's BUILTIN_REF) and TFLite Micro turn
every real rescaling into a 32-bit fixed-point multiplier and a shift
(`QuantizeMultiplier`, tensorflow/lite/kernels/internal/quantization_util.cc)
and apply it with two roundings (`MultiplyByQuantizedMultiplier`: gemmlowp's
SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT; neither builds
with TFLITE_SINGLE_ROUNDING).  Softmax uses gemmlowp's fixed-point exp and
reciprocal.  This module does the same arithmetic on TensorFlow int64 tensors
holding int32 values, so the integer-exact forward and, later, training that
sees the device's rounding share one implementation.

Multiplier quantization happens once per model on the host, in NumPy; the
per-element arithmetic is TensorFlow, so it runs batched and inside a
tf.function.  int64 holds every intermediate of the C++ int32 code without
wrapping (products of two int32 values are below 2^62); where the C++ code
saturates, these functions saturate the same way.
"""

import numpy as np
import tensorflow as tf

from mobilenet.tflite import classifier

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(real):
  """(multiplier, shift) int64 arrays of TFLite's QuantizeMultiplier.

  real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31) (0 for 0);
  frexp's mantissa rounded half away from zero; a mantissa that rounds up to
  2^31 is halved with the shift incremented; shifts below -31 flush to 0.
  """
  real = np.asarray(real, np.float64)
  mantissa, shift = np.frexp(real)
  q = classifier.round_half_away(mantissa * float(1 << 31)).astype(np.int64)
  shift = shift.astype(np.int64)
  carry = q == (1 << 31)
  q = np.where(carry, q // 2, q)
  shift = np.where(carry, shift + 1, shift)
  tiny = shift < -31
  q = np.where(tiny | (real == 0), 0, q)
  shift = np.where(tiny | (real == 0), 0, shift)
  return q, shift


def _i64(x):
  return tf.cast(x, tf.int64) if isinstance(x, tf.Tensor) else tf.constant(
      np.asarray(x, np.int64))


def saturating_rounding_doubling_high_mul(a, b):
  """gemmlowp's SaturatingRoundingDoublingHighMul (ARM VQRDMULH): round(a*b /
  2^31) with the nudge toward zero of C's truncating division, and the one
  overflow (INT32_MIN * INT32_MIN) saturated."""
  a, b = _i64(a), _i64(b)
  ab = a * b
  nudge = tf.where(ab >= 0, tf.constant(1 << 30, tf.int64),
                   tf.constant(1 - (1 << 30), tf.int64))
  high = tf.truncatediv(ab + nudge, tf.constant(1 << 31, tf.int64))
  overflow = tf.logical_and(tf.equal(a, b), tf.equal(a, INT32_MIN))
  return tf.where(overflow, tf.constant(INT32_MAX, tf.int64), high)


def rounding_divide_by_pot(x, exponent):
  """gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounded to nearest with
  ties away from zero (exponent 0..31, scalar or broadcastable)."""
  x, exponent = _i64(x), _i64(exponent)
  one = tf.constant(1, tf.int64)
  mask = tf.bitwise.left_shift(one, exponent) - one
  remainder = tf.bitwise.bitwise_and(x, mask)
  threshold = tf.bitwise.right_shift(mask, one) + tf.cast(x < 0, tf.int64)
  return tf.bitwise.right_shift(x, exponent) + tf.cast(remainder > threshold,
                                                       tf.int64)


def saturating_left_shift(x, exponent):
  """gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent."""
  x = _i64(x)
  threshold = (1 << (31 - exponent)) - 1
  shifted = tf.bitwise.left_shift(x, tf.constant(exponent, tf.int64))
  shifted = tf.where(x > threshold, tf.constant(INT32_MAX, tf.int64), shifted)
  return tf.where(x < -threshold, tf.constant(INT32_MIN, tf.int64), shifted)


def multiply_by_quantized_multiplier(x, multiplier, shift):
  """TFLite's MultiplyByQuantizedMultiplier (double rounding, the build of
  the reference kernels and TFLite Micro): x * multiplier * 2^(shift - 31).
  `multiplier` and `shift` broadcast against x (per-channel: last axis)."""
  x = _i64(x)
  shift = np.asarray(shift, np.int64)
  left = tf.constant(np.maximum(shift, 0))
  right = tf.constant(np.maximum(-shift, 0))
  high = saturating_rounding_doubling_high_mul(
      x * tf.bitwise.left_shift(tf.constant(1, tf.int64), left), multiplier)
  return rounding_divide_by_pot(high, right)


def multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift):
  """The TFLITE_SINGLE_ROUNDING build (one rounding, half up):
  (x * multiplier + 2^(30 - shift)) >> (31 - shift).  Not what the reference
  kernels or TFLM compute; optimized CPU paths round this way, which is where
  their one-step differences come from."""
  x = _i64(x)
  total = tf.constant(31 - np.asarray(shift, np.int64))
  one = tf.constant(1, tf.int64)
  rounding = tf.bitwise.left_shift(one, total - one)
  return tf.bitwise.right_shift(x * _i64(multiplier) + rounding, total)


def requantize(acc, multiplier, shift, output_zero_point, qmin, qmax):
  """int32 accumulator -> output integer: rescale, add the output zero point,
  clamp to the activation range (how every kernel here ends)."""
  out = multiply_by_quantized_multiplier(acc, multiplier, shift)
  return tf.clip_by_value(out + output_zero_point, qmin, qmax)


# ---- gemmlowp fixed point (softmax) -----------------------------------------
# A FixedPoint<int32, k> holds value * 2^(31 - k); multiplying two of them is
# SaturatingRoundingDoublingHighMul of the raw values (integer bits add up).

_ONE_Q0 = INT32_MAX  # FixedPoint<int32, 0>::One(): 1.0 is not representable


def _mul(a, b):
  return saturating_rounding_doubling_high_mul(a, b)


def rounding_half_sum(a, b):
  """gemmlowp's RoundingHalfSum: (a + b + sign) / 2, truncating."""
  s = _i64(a) + _i64(b)
  sign = tf.where(s >= 0, tf.constant(1, tf.int64), tf.constant(-1, tf.int64))
  return tf.truncatediv(s + sign, tf.constant(2, tf.int64))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
  """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series at -1/8."""
  constant_term = 1895147668        # exp(-1/8)
  one_third = 715827883
  x = _i64(a) + (1 << 28)           # a + 1/8
  x2 = _mul(x, x)
  x3 = _mul(x2, x)
  x4 = _mul(x2, x2)
  x4_over_4 = rounding_divide_by_pot(x4, 2)
  poly = rounding_divide_by_pot(_mul(x4_over_4 + x3, one_third) + x2, 1)
  return constant_term + _mul(constant_term, x + poly)


# exp(-2^k) for the barrel shifter, Q0.31, k = -2 .. 4.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
               (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits):
  """gemmlowp's exp_on_negative_values: a is FixedPoint<int32, integer_bits>
  (a <= 0), the result Q0.31."""
  a = _i64(a)
  fractional_bits = 31 - integer_bits
  quarter = 1 << (fractional_bits - 2)
  a_mod_quarter_minus_quarter = tf.bitwise.bitwise_and(
      a, tf.constant(quarter - 1, tf.int64)) - quarter
  result = exp_on_interval_between_negative_one_quarter_and_0_excl(
      saturating_left_shift(a_mod_quarter_minus_quarter, integer_bits))
  remainder = a_mod_quarter_minus_quarter - a
  for k, multiplier in _EXP_BARREL:
    if integer_bits > k:
      bit = tf.bitwise.bitwise_and(
          remainder, tf.constant(1 << (fractional_bits + k), tf.int64))
      result = tf.where(bit != 0, _mul(result, multiplier), result)
  if integer_bits > 5:
    clamp = -(1 << (fractional_bits + 5))
    result = tf.where(a < clamp, tf.zeros_like(result), result)
  return tf.where(tf.equal(a, 0), tf.constant(_ONE_Q0, tf.int64), result)


def one_over_one_plus_x_for_x_in_0_1(a):
  """1 / (1 + a) for a in [0, 1), Q0.31 in and out: Newton-Raphson in Q2.29
  from 48/17 - 32/17 * d, three steps."""
  half_denominator = rounding_half_sum(a, _ONE_Q0)
  x = 1515870810 + _mul(half_denominator, -1010580540)
  one_q2 = 1 << 29
  for _ in range(3):
    one_minus = one_q2 - _mul(half_denominator, x)
    x = x + saturating_left_shift(_mul(x, one_minus), 2)
  return saturating_left_shift(x, 1)


def count_leading_zeros_u32(x):
  """Leading zeros of x as a uint32 (x in [0, 2^32)): 32 for 0."""
  x = _i64(x)
  clz = tf.zeros_like(x)
  for width in (16, 8, 4, 2, 1):
    small = x < (1 << (32 - width))
    clz = clz + tf.where(small, tf.constant(width, tf.int64), 0)
    x = tf.where(small, tf.bitwise.left_shift(x, tf.constant(width, tf.int64)),
                 x)
  return clz + tf.cast(tf.equal(x, 0), tf.int64)
