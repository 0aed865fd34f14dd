"""Raw-op (tf.nn) kernels with the exact semantics of the Keras layers used by
keras.applications.MobileNetV2. All tensors are NHWC float32."""

import tensorflow as tf

from mobilenet.core import arch

BN_EPSILON = arch.BN_EPSILON
BN_MOMENTUM = arch.BN_MOMENTUM


def conv2d(x, kernel, bias=None, stride=1, padding="SAME"):
  y = tf.nn.conv2d(x, kernel, strides=stride, padding=padding)
  if bias is not None:
    y = tf.nn.bias_add(y, bias)
  return y


def depthwise_conv2d(x, depthwise_kernel, bias=None, stride=1,
                     padding="SAME"):
  y = tf.nn.depthwise_conv2d(x, depthwise_kernel,
                             strides=(1, stride, stride, 1), padding=padding)
  if bias is not None:
    y = tf.nn.bias_add(y, bias)
  return y


def batch_norm_inference(x, gamma, beta, moving_mean, moving_variance,
                         epsilon=BN_EPSILON):
  # Same op Keras' TF backend calls, so results agree to the last ulp or so.
  return tf.nn.batch_normalization(x, moving_mean, moving_variance, beta,
                                   gamma, epsilon)


# cuDNN rejects a smaller epsilon (and tf.nn.fused_batch_norm would silently
# raise it), so below this the explicit moments chain keeps the semantics.
_FUSED_MIN_EPSILON = 1.001e-5
# Below this many input elements the fused op measured no faster than the
# moments chain (2-core CPU: same time at 16x24x24x96, 0.57x at
# 32x112x112x32), so small inputs keep the chain's exact rounding.
_FUSED_MIN_ELEMENTS = 1 << 21
_ASSUMED_BATCH = 32  # for the size rule when the batch is unknown at trace


def sync_replica_context():
  """The replica context whose replicas share one batch, or None.

  Inside `strategy.run` of a tf.distribute strategy with more than one
  replica in sync (MirroredStrategy, MultiWorkerMirroredStrategy, ...); None
  on a single device, in the default strategy and in cross-replica context.
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync <= 1:
    return None
  return ctx


def batch_norm_training(x, gamma, beta, moving_mean, moving_variance,
                        momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                        synchronized=True):
  """Normalizes with batch statistics; returns (y, new_mean, new_variance).

  Keras 3 BatchNormalization uses `tf.nn.moments` (biased variance, divide by
  N) both to normalize and to update the moving variance, and updates as
  moving = moving * momentum + batch * (1 - momentum).

  Under a tf.distribute strategy with several replicas in sync (and
  `synchronized`), the statistics are those of the global batch, all
  replicas' pieces together (see `sync_batch_norm_training`), so the result
  equals one device running the whole batch.  Anywhere else this is the
  single-device computation, unchanged.
  """
  ctx = sync_replica_context() if synchronized else None
  if ctx is not None:
    return sync_batch_norm_training(x, gamma, beta, moving_mean,
                                    moving_variance, momentum, epsilon, ctx)
  x = tf.convert_to_tensor(x)
  size = x.shape[1:].num_elements()
  if size is not None:
    size *= x.shape[0] if x.shape[0] is not None else _ASSUMED_BATCH
  if epsilon < _FUSED_MIN_EPSILON or (size is not None and
                                      size < _FUSED_MIN_ELEMENTS):
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
    y = tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)
  else:
    # One fused op (and one fused gradient op) instead of ~10 small ones.
    # It normalizes with the biased variance like Keras but returns the
    # Bessel-corrected one.
    empty = tf.constant([], tf.float32)
    y, mean, variance = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
        epsilon=epsilon, exponential_avg_factor=1.0, data_format="NHWC",
        is_training=True)[:3]
    n = x.shape[:-1].num_elements()
    if n is None:
      n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), variance.dtype)
    else:
      n = max(n, 1)
    variance = variance * ((n - 1) / n)
  new_mean = moving_mean * momentum + mean * (1.0 - momentum)
  new_variance = moving_variance * momentum + variance * (1.0 - momentum)
  return y, new_mean, new_variance


def sync_batch_norm_training(x, gamma, beta, moving_mean, moving_variance,
                             momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                             replica_context=None):
  """`batch_norm_training` with the statistics of the global batch.

  Each replica holds a piece of the batch.  Two all-reduces (SUM) over the
  replicas of `replica_context` (default: the current one): first of
  [per-channel sum, element count], giving the global mean; then of the
  squared deviations from that mean, giving the biased global variance (the
  two-pass form: no E[x^2] - E[x]^2 cancellation).  Every replica gets the
  same statistics, hence the same moving-average update.  Gradients flow
  through the all-reduces (the gradient of an all-reduce SUM is an
  all-reduce SUM), so each replica's input gradient includes the other
  replicas' losses through the shared statistics.  Works for any strategy
  whose replica context all-reduces, MultiWorkerMirroredStrategy included; a
  replica with an empty piece contributes zeros.
  """
  ctx = replica_context or tf.distribute.get_replica_context()
  x = tf.convert_to_tensor(x)
  axes = [0, 1, 2]
  count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
  local = tf.concat([tf.reduce_sum(x, axes), count[None]], 0)
  total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)
  n = tf.stop_gradient(total[-1])
  mean = tf.math.divide_no_nan(total[:-1], n)
  # Like tf.nn.moments, no gradient through the mean here: the derivative
  # of the sum of squared deviations w.r.t. the mean is zero.
  squares = tf.reduce_sum(
      tf.math.squared_difference(x, tf.stop_gradient(mean)), axes)
  variance = tf.math.divide_no_nan(
      ctx.all_reduce(tf.distribute.ReduceOp.SUM, squares), n)
  y = tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)
  new_mean = moving_mean * momentum + mean * (1.0 - momentum)
  new_variance = moving_variance * momentum + variance * (1.0 - momentum)
  return y, new_mean, new_variance


def relu6(x):
  return tf.nn.relu6(x)


def correct_pad(height, width, kernel_size=3):
  """Keras `imagenet_utils.correct_pad` for a known input size."""
  return arch.correct_pad(height, width, kernel_size)


def zero_pad_for_stride2(x, kernel_size=3):
  """The ZeroPadding2D Keras applies before a stride-2 "valid" depthwise conv.

  Uses the static spatial size when known; otherwise the padding is computed
  from the runtime shape (so it matches a Keras model built at that size).
  """
  h, w = x.shape[1], x.shape[2]
  half = kernel_size // 2
  if h is not None and w is not None:
    (top, bottom), (left, right) = correct_pad(h, w, kernel_size)
    pads = [[0, 0], [top, bottom], [left, right], [0, 0]]
  else:
    shape = tf.shape(x)
    top = half - (1 - shape[1] % 2)
    left = half - (1 - shape[2] % 2)
    pads = tf.stack([[0, 0], [top, half], [left, half], [0, 0]])
  return tf.pad(x, pads)


def pad_matches_same(height, width, kernel_size, stride):
  """True when correct_pad + VALID equals SAME padding (lets the depthwise
  conv pad internally and skip a separate Pad op)."""
  if height is None or width is None:
    return False

  def same_pads(n):
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel_size - n, 0)
    return (total // 2, total - total // 2)

  (top, bottom), (left, right) = correct_pad(height, width, kernel_size)
  return same_pads(height) == (top, bottom) and same_pads(width) == (left,
                                                                    right)


def global_avg_pool(x):
  return tf.reduce_mean(x, axis=[1, 2])


def global_max_pool(x):
  return tf.reduce_max(x, axis=[1, 2])


def dense(x, kernel, bias=None):
  y = tf.linalg.matmul(x, kernel)
  if bias is not None:
    y = tf.nn.bias_add(y, bias)
  return y


def softmax(x):
  return tf.nn.softmax(x, axis=-1)
