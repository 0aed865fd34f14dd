"""What every classifier runtime shares: TFLite's quantization rounding,
input normalisation, and `Classifier`, float in and float out over a
fixed-shape model, which LiteRT's `runtime.Model` and TFLite Micro's
`micro_runtime.MicroModel` implement by running one batch.
"""

import numpy as np

from mobilenet.core import preprocess


class ModelFileError(ValueError):
  """The .tflite file is missing, not a TFLite model, or damaged."""


def normalization_spec(normalization):
  """{"mode": ..., "mean": ..., "std": ...} from a mode name or a dict."""
  if normalization is None:
    return {"mode": "tf"}
  spec = ({"mode": normalization} if isinstance(normalization, str)
          else dict(normalization))
  if spec.get("mode") not in preprocess.MODES:
    raise ValueError(f"unknown normalization {normalization!r}; mode must be "
                     f"one of {preprocess.MODES}")
  return spec


def normalize(pixels, normalization):
  """Model input from uint8 pixels, per a normalization spec."""
  spec = normalization_spec(normalization)
  return preprocess.normalize(pixels, mode=spec["mode"],
                              mean=spec.get("mean"), std=spec.get("std"))


def round_half_away(x):
  """TfLiteRound (std::round) in x's own float precision: halves go away from
  zero, where np.round would round them to even."""
  x = np.asarray(x)
  return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


def quantize(x, scale, zero_point, dtype):
  """Float -> integer with TFLite's rounding (half away from zero)."""
  info = np.iinfo(dtype)
  q = round_half_away(np.asarray(x, np.float64) / scale) + zero_point
  return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
  return (np.asarray(q, np.float64) - zero_point).astype(np.float32) * np.float32(scale)


class Classifier:
  """Float in, float out over one fixed-shape classifier, any runtime.

  A subclass loads the model, calls `_set_io(...)` with what its interpreter
  reports and implements `_invoke(batch)` for one input of the model's
  fixed batch size.
  """

  def _set_io(self, name, input_shape, input_dtype, input_quant, output_shape,
              output_dtype, output_quant):
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
      raise ModelFileError(f"{name}: input shape {shape} is not an NHWC image"
                           " with 1 or 3 channels")
    if np.dtype(input_dtype) not in (np.float32, np.int8, np.uint8):
      raise ModelFileError(f"{name}: unsupported input type "
                           f"{np.dtype(input_dtype).name}")
    if len(output_shape) != 2:
      raise ModelFileError(f"{name}: output shape {tuple(output_shape)}"
                           " is not (batch, classes)")
    self.input_shape = shape
    self.input_size = shape[1:3]
    self.channels = shape[3]
    self.num_classes = int(output_shape[-1])
    self.input_dtype = np.dtype(input_dtype)
    self.output_dtype = np.dtype(output_dtype)
    # (scale, zero_point); scale 0 means "not quantized".
    self.input_quant = (float(input_quant[0]), int(input_quant[1]))
    self.output_quant = (float(output_quant[0]), int(output_quant[1]))

  def _invoke(self, batch):
    raise NotImplementedError

  # ---- inference --------------------------------------------------------

  def _prepare(self, x):
    if self.input_dtype == np.float32:
      return np.asarray(x, np.float32)
    scale, zp = self.input_quant
    if scale == 0:
      raise ValueError("model has an integer input without quantization "
                       "parameters; feed it with predict_pixels(..., 'raw')")
    return quantize(x, scale, zp, self.input_dtype)

  def run_raw(self, batch):
    """Outputs as the model stores them, for inputs already in the model's
    type, one image at a time (fixed batch of 1 models are the norm; larger
    fixed batches are filled in chunks)."""
    n_fixed = self.input_shape[0]
    results = []
    for start in range(0, len(batch), n_fixed):
      chunk = batch[start:start + n_fixed]
      pad = n_fixed - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
      out = np.array(self._invoke(np.ascontiguousarray(chunk)))
      results.append(out[:n_fixed - pad] if pad else out)
    return np.concatenate(results)

  def _dequantize_output(self, raw):
    scale, zp = self.output_quant
    if self.output_dtype == np.float32 or scale == 0:
      return raw.astype(np.float32)
    return dequantize(raw, scale, zp)

  def _check_batch(self, images):
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[None]
    want = self.input_shape[1:]
    if images.ndim != 4 or images.shape[1:] != want:
      raise ValueError(f"images must have shape (n,) + {want}, got "
                       f"{images.shape}")
    return images

  def predict(self, images):
    """Scores (n, classes) float32 for normalised float images (n, h, w, c)."""
    images = self._check_batch(images)
    return self._dequantize_output(self.run_raw(self._prepare(images)))

  def quantize_pixels(self, pixels, normalization="tf"):
    """uint8 pixels as this model's input tensor (what `run_raw` takes)."""
    pixels = self._check_batch(pixels)
    spec = normalization_spec(normalization)
    if spec["mode"] == "raw" or (self.input_dtype != np.float32 and
                                 self.input_quant[0] == 0):
      return pixels.astype(self.input_dtype)
    return self._prepare(normalize(pixels, spec))

  def predict_pixels(self, pixels, normalization="tf"):
    """As `predict`, from uint8 pixels and the model's normalisation."""
    return self._dequantize_output(
        self.run_raw(self.quantize_pixels(pixels, normalization)))

  def load_images(self, paths):
    """uint8 pixels of the files at the model's size and channel count."""
    return preprocess.load_images(paths, self.input_size,
                                  channels=self.channels, mode="raw")
