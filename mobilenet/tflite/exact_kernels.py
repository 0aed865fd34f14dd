"""TFLite's int8 reference kernels as TensorFlow ops, bit for bit.

One function per builtin operator, `kernel(graph, op, values) -> output`,
where `values` maps tensor index -> int64 tf.Tensor (activations) and the
graph holds the constants.  Each follows the reference kernel of TFLite
(tensorflow/lite/kernels/internal/reference/...) and TFLite Micro, which
share that code: the real multipliers are computed in double from the
float32 scales and quantized once, exactly as their Prepare does.

Convolutions accumulate in float64: every product |w * (x - zp)| is at most
127 * 255 and a MobileNetV2 sum has at most a few thousand terms, so every
partial sum is an integer below 2^53 and float64 holds it exactly whatever
the summation order (Eigen, oneDNN or not); rounding the result to the
nearest integer is then the identity, and also absorbs any transform error
far below 0.5.  TF's CPU kernels have no int32 depthwise convolution, which
is why the accumulation is not done in integers directly.
"""

import numpy as np
import tensorflow as tf

from mobilenet.tflite import classifier
from mobilenet.tflite import exact_ops

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
# The largest sum of products float64 holds exactly (2^53).
EXACT_LIMIT = float(1 << 53)


class UnsupportedModelError(ValueError):
  """The model uses something the integer-exact forward does not do."""


def activation_range(activation, tensor):
  """[qmin, qmax] of a fused activation on an output tensor, as
  CalculateActivationRangeQuantized computes it (float32 division)."""
  info = np.iinfo(tensor.dtype)
  scale, zp = np.float32(tensor.scale), tensor.zero_point

  def q(real):
    return zp + int(classifier.round_half_away(np.float32(real) / scale))

  name = ACTIVATIONS.get(activation)
  if name is None:
    raise UnsupportedModelError(f"fused activation {activation} is not "
                                "supported by the integer-exact forward")
  lo, hi = info.min, info.max
  if name == "RELU":
    lo = max(lo, q(0.0))
  elif name == "RELU6":
    lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
  elif name == "RELU_N1_TO_1":
    lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
  return lo, hi


def channel_multipliers(input_t, weight_t, output_t, channels):
  """Per-output-channel (multiplier, shift) of conv / depthwise / FC:
  double(input_scale) * double(weight_scale[c]) / double(output_scale)."""
  w = weight_t.scales.astype(np.float64)
  if len(w) == 1:
    w = np.repeat(w, channels)
  real = np.float64(input_t.scale) * w / np.float64(output_t.scale)
  return exact_ops.quantize_multiplier(real)


def _bias(graph, op, channels):
  if len(op.inputs) < 3 or op.inputs[2] < 0:
    return np.zeros((channels,), np.int64)
  return graph.tensors[op.inputs[2]].data.astype(np.int64)


def _same_padding(size, kernel, stride, dilation):
  """TFLite's ComputePaddingWithOffset for SAME: (before, after)."""
  out = (size + stride - 1) // stride
  effective = (kernel - 1) * dilation + 1
  total = max(0, (out - 1) * stride + effective - size)
  return total // 2, total - total // 2


def _padded(x, options, kh, kw):
  if options.padding != 0:  # VALID
    return x
  _, h, w, _ = x.shape
  ph = _same_padding(h, kh, options.strideH, options.dilationHFactor)
  pw = _same_padding(w, kw, options.strideW, options.dilationWFactor)
  return tf.pad(x, [[0, 0], ph, pw, [0, 0]])


def _check_exact(x, weights):
  bound = 255.0 * float(np.abs(weights).max(initial=0)) * (
      weights.size / weights.shape[-1])
  if bound >= EXACT_LIMIT:
    raise UnsupportedModelError("a convolution's sums can exceed 2^53; the "
                                "float64 accumulation would not be exact")
  return tf.cast(x, tf.float64)


def _finish(graph, op, acc, channels, activation):
  inp, w, out = (graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]],
                 graph.tensors[op.outputs[0]])
  multiplier, shift = channel_multipliers(inp, w, out, channels)
  qmin, qmax = activation_range(activation, out)
  acc = tf.cast(tf.round(acc), tf.int64) + _bias(graph, op, channels)
  return exact_ops.requantize(acc, multiplier, shift, out.zero_point, qmin,
                              qmax)


def conv_2d(graph, op, values):
  inp, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
  o = op.options
  kernel = np.transpose(w.data, (1, 2, 3, 0)).astype(np.float64)  # HWIO
  x = _check_exact(values[inp.index] - inp.zero_point, kernel)
  kh, kw = kernel.shape[:2]
  acc = tf.nn.conv2d(_padded(x, o, kh, kw), kernel,
                     strides=[1, o.strideH, o.strideW, 1], padding="VALID",
                     dilations=[1, o.dilationHFactor, o.dilationWFactor, 1])
  return _finish(graph, op, acc, kernel.shape[-1], o.fusedActivationFunction)


def depthwise_conv_2d(graph, op, values):
  inp, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
  o = op.options
  _, kh, kw, out_ch = w.shape
  in_ch = inp.shape[-1]
  # TFLite [1, H, W, in * multiplier] is TF's [H, W, in, multiplier].
  kernel = w.data.reshape(kh, kw, in_ch, out_ch // in_ch).astype(np.float64)
  x = _check_exact(values[inp.index] - inp.zero_point, kernel[..., :1])
  acc = tf.nn.depthwise_conv2d(
      _padded(x, o, kh, kw), kernel, strides=[1, o.strideH, o.strideW, 1],
      padding="VALID", dilations=[o.dilationHFactor, o.dilationWFactor])
  return _finish(graph, op, acc, out_ch, o.fusedActivationFunction)


def fully_connected(graph, op, values):
  inp, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
  out = graph.tensors[op.outputs[0]]
  kernel = np.transpose(w.data).astype(np.float64)  # [in, out]
  x = values[inp.index] - inp.zero_point
  x = _check_exact(tf.reshape(x, [-1, kernel.shape[0]]), kernel)
  result = _finish(graph, op, tf.matmul(x, kernel), kernel.shape[1],
                   op.options.fusedActivationFunction)
  if op.options.keepNumDims:
    result = tf.reshape(result, [-1] + list(out.shape[1:]))
  return result


def add(graph, op, values):
  """int8 ADD (integer_ops/add.h, Prepare in add.cc / add_common.cc): both
  inputs shifted left by 20 and rescaled to twice the larger input scale,
  summed, then rescaled to the output."""
  a, b = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
  out = graph.tensors[op.outputs[0]]
  left_shift = 20 if out.dtype == np.int8 else 15
  twice_max = 2.0 * np.float64(max(np.float32(a.scale), np.float32(b.scale)))
  m1, s1 = exact_ops.quantize_multiplier(np.float64(a.scale) / twice_max)
  m2, s2 = exact_ops.quantize_multiplier(np.float64(b.scale) / twice_max)
  mo, so = exact_ops.quantize_multiplier(
      twice_max / (float(1 << left_shift) * np.float64(out.scale)))
  qmin, qmax = activation_range(op.options.fusedActivationFunction, out)
  scaled = []
  for t, m, s in ((a, m1, s1), (b, m2, s2)):
    shifted = (values[t.index] - t.zero_point) * (1 << left_shift)
    scaled.append(exact_ops.multiply_by_quantized_multiplier(shifted, m, s))
  return exact_ops.requantize(scaled[0] + scaled[1], mo, so, out.zero_point,
                              qmin, qmax)


def mean(graph, op, values):
  """int8 MEAN (reference reduce.h and TFLM's reduce_common.cc): with equal
  input and output quantization the integer mean, truncated; otherwise the
  zero-point-corrected sum times input_scale / output_scale with 1/N folded
  into the multiplier."""
  inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
  rank = len(inp.shape)
  axes = sorted({int(a) % rank for a in graph.tensors[op.inputs[1]].data.reshape(-1)})
  keep = bool(op.options.keepDims)
  x = values[inp.index]
  total = tf.reduce_sum(x, axis=axes, keepdims=keep)
  n = int(np.prod([x.shape[a] for a in axes]))
  info = np.iinfo(out.dtype)
  if (inp.zero_point == out.zero_point and
      np.float32(inp.scale) == np.float32(out.scale)):
    return tf.truncatediv(total, tf.constant(n, tf.int64))
  multiplier, shift = exact_ops.quantize_multiplier(
      np.float64(inp.scale) / np.float64(out.scale))
  multiplier, shift = int(multiplier), int(shift)
  n_shift = min(n.bit_length() - 1, 32, 31 + shift)
  multiplier = (multiplier << n_shift) // n
  shift -= n_shift
  return exact_ops.requantize(total - inp.zero_point * n, multiplier, shift,
                              out.zero_point, info.min, info.max)


def softmax(graph, op, values):
  """int8 SOFTMAX (reference softmax.h; PreprocessSoftmaxScaling with 5
  integer bits for the scaled differences, 12 for the sum of exps)."""
  inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
  if out.dtype != np.int8 or inp.dtype != np.int8:
    raise UnsupportedModelError("only int8 -> int8 SOFTMAX is supported")
  diff_bits, accum_bits = 5, 12
  real = min(float(np.float32(op.options.beta)) * np.float64(inp.scale) *
             float(1 << (31 - diff_bits)), float((1 << 31) - 1))
  multiplier, left_shift = (int(v) for v in
                            exact_ops.quantize_multiplier(real))
  radius = np.floor(float((1 << diff_bits) - 1) *
                    float(1 << (31 - diff_bits)) / float(1 << left_shift))
  diff_min = -int(radius)
  x = values[inp.index]
  diff = x - tf.reduce_max(x, axis=-1, keepdims=True)
  live = diff >= diff_min
  scaled = exact_ops.saturating_rounding_doubling_high_mul(
      diff * (1 << left_shift), multiplier)
  exps = exact_ops.exp_on_negative_values(scaled, diff_bits)
  terms = exact_ops.rounding_divide_by_pot(exps, accum_bits)
  sums = tf.reduce_sum(tf.where(live, terms, 0), axis=-1, keepdims=True)
  headroom = exact_ops.count_leading_zeros_u32(sums)
  bits_over_unit = accum_bits - headroom
  shifted_minus_one = tf.bitwise.left_shift(sums, headroom) - (1 << 31)
  reciprocal = exact_ops.one_over_one_plus_x_for_x_in_0_1(shifted_minus_one)
  exponent = bits_over_unit + 31 - 8
  probs = exact_ops.rounding_divide_by_pot(
      exact_ops.saturating_rounding_doubling_high_mul(reciprocal, exps),
      exponent) - 128
  probs = tf.clip_by_value(probs, -128, 127)
  return tf.where(live, probs, tf.constant(-128, tf.int64))


def quantize(graph, op, values):
  """QUANTIZE: int -> int requantization (Requantize), or float -> int
  (AffineQuantize: round(x / scale) in float32, + zero point, clamp)."""
  inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
  info = np.iinfo(out.dtype)
  if inp.dtype == np.float32:
    v = tf.cast(values[inp.index], tf.float32) / np.float32(out.scale)
    q = tf.sign(v) * tf.floor(tf.abs(v) + 0.5)
    return tf.clip_by_value(tf.cast(q, tf.int64) + out.zero_point, info.min,
                            info.max)
  multiplier, shift = exact_ops.quantize_multiplier(
      np.float64(inp.scale) / np.float64(out.scale))
  return exact_ops.requantize(values[inp.index] - inp.zero_point, multiplier,
                              shift, out.zero_point, info.min, info.max)


def dequantize(graph, op, values):
  """DEQUANTIZE: float32(double(scale) * (q - zero_point))."""
  inp = graph.tensors[op.inputs[0]]
  q = tf.cast(values[inp.index] - inp.zero_point, tf.float64)
  return tf.cast(q * np.float64(inp.scale), tf.float32)


def reshape(graph, op, values):
  out = graph.tensors[op.outputs[0]]
  x = values[op.inputs[0]]
  return tf.reshape(x, [-1] + list(out.shape[1:]))


KERNELS = {"CONV_2D": conv_2d, "DEPTHWISE_CONV_2D": depthwise_conv_2d,
           "FULLY_CONNECTED": fully_connected, "ADD": add, "MEAN": mean,
           "SOFTMAX": softmax, "QUANTIZE": quantize,
           "DEQUANTIZE": dequantize, "RESHAPE": reshape}
