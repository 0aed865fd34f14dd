"""File helpers shared by the libraries and every command-line tool."""

import hashlib
import os
import tempfile


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


def atomic_write(path, data, mode=0o644):
  """Writes bytes or str to `path` whole or not at all (temp file + rename).

  The parent directory is created here, at the moment there is something to
  put in it, so a tool that fails earlier leaves no empty directory behind.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path),
                             suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data.encode("utf8") if isinstance(data, str) else data)
    os.chmod(tmp, mode)  # mkstemp's 0600 would hide the file from others
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_all(outputs, mode=0o644):
  """Writes {path: bytes or str} all or none: every file goes to a temp file
  beside it first, and they are renamed only when all were written."""
  temps, done = [], []
  try:
    for final, data in outputs.items():
      directory = os.path.dirname(os.path.abspath(final))
      os.makedirs(directory, exist_ok=True)
      fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(final),
                                 suffix=".tmp", dir=directory)
      temps.append(tmp)
      os.fchmod(fd, mode)  # mkstemp's 0600 would hide the file from others
      with os.fdopen(fd, "wb") as f:
        f.write(data.encode("utf8") if isinstance(data, str) else data)
    for final, tmp in zip(outputs, temps):
      os.replace(tmp, final)
      done.append(final)
  except BaseException:
    # Some files of a set without the others would be a partial result too.
    for path in temps + done:
      if os.path.exists(path):
        os.remove(path)
    raise
  return list(outputs)


def replace_dir(new, final):
  """Moves the finished directory `new` to `final`, replacing an older one
  only now; `new` must be on the same file system (e.g. a temp dir beside)."""
  import shutil  # pylint: disable=g-import-not-at-top
  old = None
  if os.path.exists(final):
    old = tempfile.mkdtemp(prefix="." + os.path.basename(final) + ".old.",
                           dir=os.path.dirname(os.path.abspath(final)))
    os.replace(final, os.path.join(old, "previous"))
  os.replace(new, final)
  if old:
    shutil.rmtree(old, ignore_errors=True)
