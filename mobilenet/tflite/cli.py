"""What every tflite command-line tool shares: paths relative to the user's
shell under `bazel run`, and bad input as one stderr line, never a traceback."""

import os
import sys

# Before TensorFlow/LiteRT load: their C++ start-up chatter would bury the
# one line a user needs to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet.core import files  # pylint: disable=g-import-not-at-top,wrong-import-position


class UsageError(ValueError):
  """Bad flags or input; the message says what to change."""


user_path = files.user_path


def writable_dir(path, flag="--save_to"):
  """Creates `path` if needed; one clear error when it cannot be used."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UsageError(f"{flag}={path}: cannot create directory "
                     f"({e.strerror or e}); choose a writable directory") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UsageError(f"{flag}={path}: directory is not writable; choose a "
                     "writable directory")
  return path


def run(main, expected=(ValueError, OSError)):
  """app.run(main), turning `expected` errors into `error: ...` + exit 1."""

  def guarded(argv):
    try:
      return main(argv)
    except expected as e:
      msg = " ".join(str(e).split()) or type(e).__name__
      sys.stderr.write(f"error: {msg}\n")
      sys.stderr.flush()
      sys.exit(1)
    except KeyboardInterrupt:
      sys.stderr.write("error: interrupted\n")
      sys.exit(130)

  app.run(guarded)
