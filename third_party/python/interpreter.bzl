"""`@mnv2_python`: the CPython 3.11 the toolchain runs and pip.parse resolves wheels for.

requirements_lock.txt is hash-pinned for CPython 3.11 (and rules_python 0.22.1's
own pip/setuptools crash on 3.12+), so the interpreter must be a 3.11:
  * --repo_env=MNV2_PYTHON=<path> when given: tools/bazel's offline rc sets it to
    the host's /usr/bin/python3 when that is a 3.11, else to Debian bookworm's
    CPython 3.11 it unpacked into the per-user cache;
  * otherwise (bazelisk) the host's /usr/bin/python3, which must be a 3.11.
The repository holds `python3` (a link to that interpreter, for pip.parse's
python_interpreter_target) and the Python toolchain naming the same file, so
tests that import TensorFlow run the interpreter the wheels were resolved for.
"""

_ENV = "MNV2_PYTHON"
_HOST = "/usr/bin/python3"

_BUILD = """\
load("@rules_python//python:defs.bzl", "py_runtime", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

# CPython {version}, chosen by {source}.
exports_files(["python3"])

py_runtime(
    name = "py3",
    interpreter_path = "{path}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "py_pair",
    py3_runtime = ":py3",
)

toolchain(
    name = "toolchain",
    toolchain = ":py_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _version(rctx, python):
    r = rctx.execute([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    return r.stdout.strip() if r.return_code == 0 else None

def _mnv2_python_impl(rctx):
    path = rctx.os.environ.get(_ENV, "")
    source = "--repo_env=%s" % _ENV
    if not path:
        path, source = _HOST, "the host (no --repo_env=%s)" % _ENV
    version = _version(rctx, path)
    if version == None or not version.startswith("3.11."):
        fail("mobilenet_v2 builds with CPython 3.11 (requirements_lock.txt is pinned for it) but " +
             "{} is {}: run tools/bazel (it provisions a CPython 3.11), or pass ".format(
                 path,
                 version or "not a working Python",
             ) + "--repo_env={}=/path/to/python3.11".format(_ENV))
    rctx.symlink(path, "python3")
    rctx.file("BUILD.bazel", _BUILD.format(path = path, version = version, source = source))

mnv2_python = repository_rule(
    implementation = _mnv2_python_impl,
    environ = [_ENV],
)

def _python_impl(_mctx):
    mnv2_python(name = "mnv2_python")

python = module_extension(implementation = _python_impl)
