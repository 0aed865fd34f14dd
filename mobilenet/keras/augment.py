"""Training-set augmentation presets, run inside the tf.data pipeline.

Each function maps (image float32 [0, 255] HxWxC, seed int32[2]) -> image.
The randomness is stateless, keyed by (epoch shuffle seed, position in the
epoch), so an epoch's augmented stream is a fixed function of the seed and a
resumed run sees the very images the interrupted one would have.
Validation never goes through here.
"""

import math

import tensorflow as tf

# digits: the variation of hand-written digits (MNIST centres them by mass).
MAX_ROTATION_DEG = 10.0
MAX_SHIFT = 0.1          # of the image side
ZOOM = (0.9, 1.1)
# photos: Inception-style crop, as keras_cv / torchvision defaults.
CROP_AREA = (0.25, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
JITTER = 0.2             # brightness (of 255), contrast, saturation


def _uniform(seed, i, low, high):
  return tf.random.stateless_uniform(
      (), seed=tf.stack([seed[0], seed[1] * 8 + i]), minval=low, maxval=high)


def digits(image, seed):
  """Random rotation, zoom and shift: one affine warp, bilinear, edges
  extended (the background of a centred digit)."""
  size = tf.cast(tf.shape(image)[0], tf.float32)
  angle = _uniform(seed, 0, -1.0, 1.0) * MAX_ROTATION_DEG * math.pi / 180
  scale = _uniform(seed, 1, ZOOM[0], ZOOM[1])
  tx = _uniform(seed, 2, -MAX_SHIFT, MAX_SHIFT) * size
  ty = _uniform(seed, 3, -MAX_SHIFT, MAX_SHIFT) * size
  c = (size - 1.0) / 2.0
  # Output pixel p reads input R(-angle) (p - c - t) / scale + c.
  cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
  a0, a1, b0, b1 = cos, sin, -sin, cos
  a2 = c - a0 * (c + tx) - a1 * (c + ty)
  b2 = c - b0 * (c + tx) - b1 * (c + ty)
  transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform,
      output_shape=tf.shape(image)[:2], fill_value=0.0,
      interpolation="BILINEAR", fill_mode="NEAREST")
  return tf.ensure_shape(out[0], image.shape)


def photos(image, seed):
  """Random-resized crop, horizontal flip, brightness/contrast/saturation."""
  shape = tf.shape(image)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=CROP_ASPECT,
      area_range=CROP_AREA, max_attempts=10, use_image_if_no_bounding_boxes=True)
  out = tf.slice(image, begin, crop_size)
  out = tf.image.resize(out, shape[:2], method="bilinear", antialias=True)
  out = tf.image.stateless_random_flip_left_right(out, seed + 1)
  out = tf.image.stateless_random_brightness(out, JITTER * 255.0, seed + 2)
  out = tf.image.stateless_random_contrast(out, 1 - JITTER, 1 + JITTER,
                                           seed + 3)
  if image.shape[-1] == 3:
    out = tf.image.stateless_random_saturation(out, 1 - JITTER, 1 + JITTER,
                                               seed + 4)
  return tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), image.shape)


PRESETS = {"none": None, "digits": digits, "photos": photos}
