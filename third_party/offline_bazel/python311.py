"""The CPython 3.11 the build runs: the host's, or Debian bookworm's in the cache.

requirements_lock.txt is hash-pinned for CPython 3.11 (and rules_python 0.22.1's
own pip/setuptools crash on 3.12+), so every host builds with a 3.11:
  * the host's /usr/bin/python3 when it is a 3.11 (Debian 12, the CI machines);
  * otherwise bookworm's python3.11 packages unpacked into <cache>/python with
    a private apt state, like the Bazel prefix.  Its executable keeps the host's
    glibc (forward-compatible: any glibc >= bookworm's 2.36) and gets an RPATH to
    bookworm's libraries it links (LD_LIBRARY_PATH stays unset: what it starts
    keeps the host's libraries).  (sid's loader, as Bazel's executables get,
    would free it from the host's glibc, but patchelf's --set-interpreter leaves
    this executable crashing at load.)
The interpreter's path goes to the offline rc as --repo_env=MNV2_PYTHON, which
third_party/python/interpreter.bzl turns into the toolchain and pip.parse's
interpreter.
"""

import glob
import os
import subprocess

from debian_archive import Apt, ProvisionError, fetch_current, run, say

SUITE = "bookworm"
HOST_PYTHON = "/usr/bin/python3"
TRIPLET = "x86_64-linux-gnu"
# The interpreter, its standard library, ensurepip (venvs) with the wheels it
# installs, and the libraries the executable and lib-dynload link against
# (glibc excepted: the host's is used).
PACKAGES = """
python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11-venv
python3-pip-whl python3-setuptools-whl
libexpat1 zlib1g libbz2-1.0 liblzma5 libffi8 libssl3 libsqlite3-0 libncursesw6
libtinfo6 libreadline8 libuuid1 libdb5.3 libnsl2 libtirpc3 libcrypt1
libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
""".split()


def host_version(python=HOST_PYTHON):
  """'3.11.2' for a working interpreter, else None."""
  try:
    out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def wants_hermetic():
  """Why the cache's CPython is needed, or None when the host's 3.11 will do."""
  if os.environ.get("MOBILENET_HERMETIC_PYTHON") == "1":
    return "MOBILENET_HERMETIC_PYTHON=1"
  version = host_version()
  if version is None:
    return "this host has no %s" % HOST_PYTHON
  if not version.startswith("3.11."):
    return "this host's %s is %s" % (HOST_PYTHON, version)
  return None


def _names(pkgs, provides):
  missing = [n for n in PACKAGES if n not in pkgs]
  if missing:
    raise ProvisionError("%s no longer has %s" % (SUITE, ", ".join(missing)))
  return PACKAGES


def _use_local_wheels(root):
  # Debian's ensurepip reads its pip/setuptools wheels from the configure-time
  # /usr/share/python-wheels: point it at the cache's copy.
  wheels = os.path.join(root, "usr/share/python-wheels") + "/"
  for path in glob.glob(os.path.join(root, "usr/lib/python3.11/_sysconfigdata_*.py")):
    text = open(path).read()
    with open(path, "w") as f:
      f.write(text.replace("'/usr/share/python-wheels/'", repr(wheels)))


GLIBC = (2, 36)  # bookworm's: what its executables and libraries may need


def check_glibc():
  version = os.confstr("CS_GNU_LIBC_VERSION") or ""
  found = tuple(int(x) for x in version.split()[-1].split(".")[:2]) if version.startswith("glibc") else ()
  if found < GLIBC:
    raise ProvisionError("the build's CPython 3.11 (Debian %s's) needs glibc >= %d.%d; this host has %s "
                         "(or install a CPython 3.11 as /usr/bin/python3)"
                         % (SUITE, GLIBC[0], GLIBC[1], version or "no glibc"))


def provision_python(cache, mirror, patchelf):
  """Unpacks bookworm's CPython 3.11 into <cache>/python; returns its executable."""
  check_glibc()
  apt = Apt(os.path.join(cache, "apt-" + SUITE), mirror, SUITE)
  names, paths, pkgs = fetch_current(apt, _names, os.path.join(cache, "debs-" + SUITE))
  root = os.path.join(cache, "python")
  say("unpacking %s's python3.11 %s into %s" % (SUITE, pkgs["python3.11-minimal"]["Version"], root))
  subprocess.run(["rm", "-rf", root], check=True)
  os.makedirs(root)
  for name in names:
    run(["dpkg-deb", "-x", paths[name], root])
  # DT_RPATH (not RUNPATH): it also serves the lib-dynload modules' libraries.
  rpath = ":".join([os.path.join(root, "usr/lib", TRIPLET), os.path.join(root, "lib", TRIPLET)])
  python = os.path.join(root, "usr/bin/python3.11")
  run(patchelf + ["--force-rpath", "--set-rpath", rpath, python])
  _use_local_wheels(root)
  check = ("import ssl, ctypes, sqlite3, lzma, bz2, zlib, decimal, uuid, venv, ensurepip, sys;"
           "assert sys.prefix == %r, sys.prefix; print(sys.version.split()[0])"
           % os.path.join(root, "usr"))
  out = subprocess.run([python, "-I", "-c", check], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
  if out.returncode != 0 or not out.stdout.startswith("3.11."):
    raise ProvisionError("the unpacked CPython 3.11 does not run: %s" % out.stdout.strip()[-300:])
  return python
