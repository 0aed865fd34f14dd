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


def output_dir(path, flag="--save_to"):
  """Checks that `path` is, or can be created as, a writable directory.

  Creates nothing: a tool makes the directory when it has a file to put in
  it, so a run that fails leaves no empty output directory behind.
  """
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UsageError(f"{flag}={path}: {existing} is a file, not a directory; "
                     "choose a writable directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UsageError(f"{flag}={path}: {existing} is not writable; choose a "
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
