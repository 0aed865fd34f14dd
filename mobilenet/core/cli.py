"""What every command-line tool shares.

* Bad input is one `error: ...` line on stderr and exit 1, never a traceback
  (`run`); every library error the tools expect is a ValueError.
* Paths are the user's: relative to their shell under `bazel run`
  (`user_path`); outputs are written whole or not at all (`atomic_write`) and
  no output directory appears before there is something to put in it
  (`output_dir` only checks).
* The model flags (--weights, --alpha, --input_size, --labels) are defined
  and resolved in one place (`define_model_flags`, `model_source`), which
  also says in one `note:` line each what was assumed rather than read.
"""

import os
import sys
import traceback

# Before TensorFlow/LiteRT load: their C++ start-up chatter would bury the
# one line a user needs to read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from mobilenet.core import files  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
user_path = files.user_path
atomic_write = files.atomic_write


class UsageError(ValueError):
  """Bad flags or input; the message says what to change."""


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


def define_model_flags(weights="auto", labels=True):
  """--weights, --alpha, --input_size (and --labels) for `model_source`."""
  flags.DEFINE_string("weights", weights, "auto | imagenet | bundled | random "
                      "| PATH of a Keras .h5 or our checkpoint (.json, or the "
                      ".h5 beside it). auto: ImageNet when cached or "
                      "downloadable, else the bundled digit model.")
  flags.DEFINE_float("alpha", None, "Width multiplier; default: read from the "
                     "weights' shapes.")
  flags.DEFINE_integer("input_size", None, "Input height = width in pixels "
                       "(>= 32); default: the checkpoint's, the official "
                       "Keras file name's, else 224 (said in a note).")
  if labels:
    flags.DEFINE_string("labels", None, "Class-names file, one per line (a "
                        "leading 'background' line fits 1001 outputs); "
                        "default: the weights' own names.")


def model_source(include_top=True, **overrides):
  """The ModelSource the model flags name; prints its `note:` lines.

  `overrides` (alpha=..., input_size=...) replace flags that mean something
  else in a tool (e.g. train's --alpha is the width of a model to train).
  """
  from mobilenet.core import model_source as ms  # pylint: disable=g-import-not-at-top
  kwargs = {"alpha": FLAGS.alpha, "input_size": FLAGS.input_size,
            "labels": FLAGS["labels"].value if "labels" in FLAGS else None}
  kwargs.update(overrides)
  kwargs["labels"] = user_path(kwargs["labels"])
  source = ms.resolve(ms.user_spec(FLAGS.weights), include_top=include_top,
                      **kwargs)
  for note in source.notes:
    print(f"note: {note}", file=sys.stderr)
  return source


def exit_now(code):
  """Ends the process with `code` at once, output flushed.

  After an error, threads that TensorFlow started (a tf.data iterator left
  mid-epoch, the collective runtime of a lost cluster) can deadlock the
  interpreter's teardown: the process then sits at 0 % CPU forever and
  its scheduler never restarts it.  os._exit skips that teardown; every
  file we write is closed (or renamed into place) before we get here.
  """
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code)  # pylint: disable=protected-access


def run(main, expected=(ValueError, OSError), **app_kwargs):
  """app.run(main), turning `expected` errors into `error: ...` + exit 1.

  Any failure (an error, a non-zero exit code, an unexpected exception with
  its traceback) ends the process within moments (`exit_now`); a success
  exits the usual way.
  """

  def guarded(argv):
    try:
      code = main(argv)
    except expected as e:
      msg = " ".join(str(e).split()) or type(e).__name__
      sys.stderr.write(f"error: {msg}\n")
      exit_now(1)
    except KeyboardInterrupt:
      sys.stderr.write("error: interrupted\n")
      exit_now(130)
    except SystemExit as e:
      code = e.code
    except app.UsageError:
      raise  # absl prints the usage and exits 1
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()  # a bug: the traceback is what to report
      exit_now(1)
    if code not in (None, 0):
      if not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
      exit_now(code)
    return code

  app.run(guarded, **app_kwargs)
