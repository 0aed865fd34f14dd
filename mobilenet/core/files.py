"""File helpers shared by the libraries and every command-line tool."""

import hashlib
import os


def user_path(path):
  """`path` as the user meant it: relative to their shell, not runfiles.

  `bazel run` starts tools inside the runfiles tree and names the user's
  directory in BUILD_WORKING_DIRECTORY.
  """
  if path is None:
    return None
  path = os.path.expanduser(path)
  base = os.environ.get("BUILD_WORKING_DIRECTORY")
  if base and not os.path.isabs(path):
    return os.path.join(base, path)
  return path


def sha256_file(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()
