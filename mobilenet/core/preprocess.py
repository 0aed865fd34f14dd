"""Image decoding and input normalisation for MobileNetV2 models.

Any file Pillow can read becomes an upright uint8 array of the model's size
(`load_image`), then model input (`normalize`).  Everything that can go wrong
with an input file surfaces as one exception type, `ImageError`, whose
message names the file and the problem.
"""

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's names for the resampling filters; Keras' `load_img` maps its
# `interpolation` argument onto the same filters, so results match it.
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# Normalisation modes accepted by `normalize`.
MODES = ("tf", "mean_std", "raw")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".ppm", ".pgm", ".pbm")


class ImageError(ValueError):
  """An input image could not be used; the message says which and why."""


def _fail(name, problem):
  raise ImageError(f"{name}: {problem}")


def _check_size(name, image, max_pixels):
  limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
  if limit and image.width * image.height > limit:
    _fail(name, f"refusing to decode {image.width}x{image.height} pixels "
          f"(limit {limit}): possible decompression bomb")


def _open_and_decode(fp, name, max_pixels):
  """Opens and fully decodes; returns an upright, loaded Pillow image."""
  try:
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a model
    # input never needs that many pixels, so the warning is fatal too.
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      image = Image.open(fp)
      _check_size(name, image, max_pixels)
      # load() decodes every byte now, so a truncated file fails here rather
      # than yielding a half-grey picture (LOAD_TRUNCATED_IMAGES stays off).
      image.load()
      upright = ImageOps.exif_transpose(image)
  except ImageError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    _fail(name, f"refusing to decode a possible decompression bomb ({e})")
  except UnidentifiedImageError:
    _fail(name, "not an image (Pillow cannot identify the file format)")
  except Exception as e:  # pylint: disable=broad-except
    # Pillow reports corrupt data through many exception types (OSError,
    # SyntaxError, struct.error, ...); all mean the same thing to a caller.
    msg = str(e) or type(e).__name__
    if "truncated" in msg.lower():
      _fail(name, f"truncated or corrupt image data ({msg})")
    _fail(name, f"cannot decode image ({msg})")
  return upright


def _to_uint8_gray(array):
  """Maps a single-channel high-bit-depth or float array onto 0..255."""
  array = np.asarray(array)
  if array.dtype == np.uint8:
    return array
  if np.issubdtype(array.dtype, np.floating):
    array = np.nan_to_num(array.astype(np.float64))
    lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    if lo >= 0.0 and hi <= 1.0:
      scaled = array * 255.0
    elif lo >= 0.0 and hi <= 255.0:
      scaled = array
    else:
      scaled = (array - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
  array = array.astype(np.int64)
  lo, hi = int(array.min(initial=0)), int(array.max(initial=0))
  if lo >= 0 and hi <= 255:
    return array.astype(np.uint8)
  if lo >= 0 and hi <= 65535:
    # 65535 -> 255 and 257*v -> v exactly, the inverse of 8->16-bit widening.
    return ((array * 255 + 32767) // 65535).astype(np.uint8)
  # 32-bit data with no known range: stretch what is there.
  scaled = (array - lo) * 255.0 / max(hi - lo, 1)
  return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_rgb_or_gray(image, channels):
  """Converts any Pillow mode to "RGB" (channels=3) or "L" (channels=1)."""
  mode = image.mode
  if mode in ("I", "F") or mode.startswith("I;16"):
    image = Image.fromarray(_to_uint8_gray(np.array(image)), mode="L")
  elif mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  elif mode in ("PA", "La", "RGBa"):
    image = image.convert("RGBA")
  if image.mode in ("LA", "RGBA"):
    # Transparent pixels become white, as in a browser or an image viewer,
    # rather than whatever colour happens to sit under alpha=0.
    base = "L" if image.mode == "LA" else "RGB"
    white = Image.new(base, image.size, 255 if base == "L" else (255,) * 3)
    white.paste(image.convert(base), mask=image.getchannel("A"))
    image = white
  target = "L" if channels == 1 else "RGB"
  if image.mode != target:
    # Pillow handles 1, P, CMYK (incl. Adobe-inverted JPEG), YCbCr, LAB,
    # HSV and RGBX here, and RGB->L with ITU-R 601-2 luma.
    image = image.convert(target)
  return image


def _normalize_size(size):
  if size is None:
    return None
  if isinstance(size, int):
    size = (size, size)
  height, width = (int(v) for v in size)
  if height <= 0 or width <= 0:
    raise ValueError(f"size must be positive, got {size!r}")
  return height, width


def decode_image(data, size=None, channels=3, interpolation="bilinear",
                 name="<bytes>", max_pixels=None):
  """Decodes encoded image bytes; see `load_image` for the arguments."""
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")
  if interpolation not in _RESAMPLE:
    raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, "
                     f"got {interpolation!r}")
  size = _normalize_size(size)
  if not data:
    _fail(name, "file is empty (0 bytes)")
  image = _open_and_decode(io.BytesIO(data), name, max_pixels)
  image = _to_rgb_or_gray(image, channels)
  if size is not None and (image.height, image.width) != size:
    image = image.resize((size[1], size[0]), _RESAMPLE[interpolation])
  array = np.asarray(image, dtype=np.uint8)
  if channels == 1:
    array = array[..., np.newaxis]
  return array


def load_image(path, size=None, channels=3, interpolation="bilinear",
               max_pixels=None):
  """Reads one image file as an upright uint8 array.

  Args:
    path: file to read; any format Pillow decodes.
    size: `(height, width)` or an int for a square, or None to keep the
      file's size.  Resizing uses Pillow like `keras.utils.load_img`.
    channels: 3 for RGB, 1 for grayscale (luma).
    interpolation: resampling filter name, "bilinear" by default.
    max_pixels: refuse images with more pixels than this; None means
      Pillow's `Image.MAX_IMAGE_PIXELS`.

  Returns:
    uint8 array of shape (height, width, channels).

  Raises:
    ImageError: the file is missing, empty, not an image, truncated,
      corrupt or too large.
  """
  name = os.fspath(path)
  if not os.path.exists(name):
    _fail(name, "no such file")
  if os.path.isdir(name):
    _fail(name, "is a directory, not an image file")
  try:
    with open(name, "rb") as f:
      data = f.read()
  except OSError as e:
    _fail(name, f"cannot read file ({e.strerror or e})")
  return decode_image(data, size=size, channels=channels,
                      interpolation=interpolation, name=name,
                      max_pixels=max_pixels)


def preprocess_input(x):
  """Scales pixels to [-1, 1] like keras.applications.mobilenet_v2."""
  x = np.asarray(x)
  x = x.astype(np.float32) if x.dtype != np.float32 else x.copy()
  # Same two float32 steps, in the same order, as Keras: bit-identical.
  x /= np.float32(127.5)
  x -= np.float32(1.0)
  return x


def normalize(images, mode="tf", mean=None, std=None):
  """Turns uint8 pixels into model input.

  Args:
    images: uint8 (or float 0..255) array, channels last.
    mode: "tf": [-1, 1] exactly as keras.applications.mobilenet_v2;
      "mean_std": (x - mean) / std, with mean and std on the 0..255 scale,
      scalars or one value per channel; "raw": uint8 unchanged, for
      quantized models whose input is uint8.
    mean, std: required for "mean_std", refused otherwise.

  Returns:
    float32 array for "tf"/"mean_std", uint8 for "raw".
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if mode != "mean_std" and (mean is not None or std is not None):
    raise ValueError(f"mean/std only apply to mode='mean_std', not {mode!r}")
  if mode == "tf":
    return preprocess_input(images)
  if mode == "raw":
    images = np.asarray(images)
    if images.dtype != np.uint8:
      if images.min(initial=0) < 0 or images.max(initial=0) > 255:
        raise ValueError("mode='raw' needs pixel values in 0..255")
      images = np.rint(images).astype(np.uint8)
    return images
  if mean is None or std is None:
    raise ValueError("mode='mean_std' needs both mean and std")
  mean = np.asarray(mean, dtype=np.float32)
  std = np.asarray(std, dtype=np.float32)
  if np.any(std == 0):
    raise ValueError(f"std must be non-zero, got {std.tolist()}")
  return (np.asarray(images, dtype=np.float32) - mean) / std


def find_images(directory):
  """Image files under `directory` (recursively), sorted for determinism."""
  found = []
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    found.extend(os.path.join(root, f) for f in sorted(files)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  return found


def load_images(paths, size, channels=3, mode="tf", mean=None, std=None,
                interpolation="bilinear", max_pixels=None):
  """Loads many files into one normalised batch.

  Every file is tried; if any fail, one ImageError lists all the failures so
  a bad data set is fixed in one pass rather than one file at a time.

  Returns:
    array of shape (len(paths), height, width, channels); dtype as
    `normalize` returns for `mode`.
  """
  size = _normalize_size(size)
  if size is None:
    raise ValueError("load_images needs a size: a batch has one shape")
  paths = list(paths)
  if not paths:
    raise ValueError("load_images got no paths")
  batch = np.empty((len(paths),) + size + (channels,), np.uint8)
  errors = []
  for i, path in enumerate(paths):
    try:
      batch[i] = load_image(path, size=size, channels=channels,
                            interpolation=interpolation,
                            max_pixels=max_pixels)
    except ImageError as e:
      errors.append(str(e))
  if errors:
    shown = "; ".join(errors[:5])
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    raise ImageError(f"{len(errors)} of {len(paths)} images failed: "
                     f"{shown}{more}")
  return normalize(batch, mode=mode, mean=mean, std=std)
