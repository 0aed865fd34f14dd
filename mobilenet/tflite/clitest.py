"""Test helper: runs a tool of this package as a subprocess, the way a user
does, from Bazel runfiles or the source tree."""

import os
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def tool_command(name):
  """argv prefix for tool `name` (convert, infer)."""
  launcher = os.path.join(_HERE, name)  # the py_binary in runfiles
  if os.path.isfile(launcher) and os.access(launcher, os.X_OK):
    return [launcher]
  return [sys.executable, os.path.join(_HERE, name + ".py")]


def run(name, *args, cwd=None):
  env = dict(os.environ)
  env.pop("BUILD_WORKING_DIRECTORY", None)
  root = os.path.normpath(os.path.join(_HERE, "..", ".."))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run(tool_command(name) + [str(a) for a in args],
                        capture_output=True, text=True, env=env, cwd=cwd,
                        check=False, timeout=600)


def error_lines(result):
  """stderr lines that are ours (TF/LiteRT start-up chatter excluded)."""
  return [l for l in result.stderr.splitlines() if l.startswith("error:")]
