#!/usr/bin/env python3
"""Provisions Debian sid's bazel-bootstrap 7.7.1 into a private per-user prefix.

Used by tools/bazel when no BAZEL_REAL is given (no bazelisk, no registry):
  * sid's package index is fetched with a private apt configuration whose
    mirror is read from this machine's own apt sources (the host's apt state is
    never touched);
  * the packages of PACKAGES.txt are resolved against that index (a package
    renamed in sid, e.g. a library's soname bump, is found again through the
    dependency closure of the bazel packages), downloaded, checked against the
    index's SHA256 and unpacked with `dpkg-deb -x`;
  * the executables Bazel execs get the prefix's ELF interpreter and RPATH
    (LD_LIBRARY_PATH is never set, so build actions keep the host's glibc);
  * the JDK (truststore.py) and pip.parse's pip (REQUESTS_CA_BUNDLE) trust the
    system's CA bundle, not a Java package's /etc/ssl/certs/java/cacerts or certifi's;
  * the build's CPython 3.11 is chosen: the host's, or bookworm's unpacked
    into the cache (python311.py);
  * an rc file with startup flags, the Bzlmod overrides to the Debian-packaged
    rules and the interpreter (--repo_env=MNV2_PYTHON) is written, and
    `bazel version` must say 7.7.1.
The stamp file is written last, so an interrupted run is simply redone; a file
lock makes concurrent first runs wait for each other.
"""

import argparse
import fcntl
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from debian_archive import (Apt, ProvisionError, dependency_closure, fetch_current, host_mirror,
                            run, say)
import python311
import truststore

HERE = os.path.dirname(os.path.abspath(__file__))
BAZEL_VERSION = "7.7.1"
TRIPLET = "x86_64-linux-gnu"
JDK = "21"


# ----------------------------------------------------------------- host checks
def check_host():
  if platform.machine() != "x86_64":
    raise ProvisionError("offline Bazel needs an x86-64 Debian host (this is %s)" % platform.machine())
  for tool in ("apt-get", "dpkg-deb"):
    if shutil.which(tool) is None:
      raise ProvisionError("offline Bazel needs Debian's apt (no `%s` here)" % tool)


def stem(name):
  return re.sub(r"(t64)?$", "", re.sub(r"[0-9.]+(t64)?$", "", name))


def resolve(wanted, pkgs, provides):
  """Maps recorded package names to names in today's index (renames via closure stems)."""
  roots = [n for n in wanted if n.startswith("bazel-") or n.startswith("openjdk-")]
  closure = dependency_closure(pkgs, provides, roots)
  resolved, missing = [], []
  for name in wanted:
    if name in pkgs:
      resolved.append(name)
      continue
    twins = sorted(n for n in closure if stem(n) == stem(name) and n != name)
    if twins:
      say("%s is gone from sid; using %s" % (name, twins[-1]))
      resolved.append(twins[-1])
    else:
      missing.append(name)
  if missing:
    raise ProvisionError("sid no longer has %s" % ", ".join(missing))
  return resolved


def read_package_list():
  names = []
  for line in open(os.path.join(HERE, "PACKAGES.txt")):
    line = line.split("#")[0].split()
    names.extend(line)
  return [n.replace("@JDK@", JDK) for n in names]


# ----------------------------------------------------------------- prefix
def stop_servers(out, prefix):
  for pidfile in glob.glob(os.path.join(out, "*", "server", "server.pid.txt")):
    try:
      pid = int(open(pidfile).read().strip())
      cmdline = open("/proc/%d/cmdline" % pid, "rb").read().decode(errors="replace")
    except (OSError, ValueError):
      continue
    if prefix in cmdline:
      say("stopping Bazel server %d that runs from the old prefix" % pid)
      os.kill(pid, 15)
      for _ in range(50):
        if not os.path.exists("/proc/%d" % pid):
          break
        time.sleep(0.1)


def patch_executables(prefix):
  lib = os.path.join(prefix, "usr/lib", TRIPLET)
  ldso = os.path.join(lib, "ld-linux-x86-64.so.2")
  patchelf = [ldso, "--library-path", lib, os.path.join(prefix, "usr/bin/patchelf")]
  jh = os.path.join(prefix, "usr/lib/jvm/java-%s-openjdk-amd64" % JDK)
  jobs = [(os.path.join(prefix, "usr/bin/bazel"), lib)]
  jobs += [(f, lib) for f in glob.glob(os.path.join(prefix, "usr/libexec", TRIPLET, "bazel", "*"))]
  java_rpath = "$ORIGIN:$ORIGIN/../lib:" + lib
  jobs += [(f, java_rpath) for f in glob.glob(os.path.join(jh, "bin", "*"))]
  jobs += [(os.path.join(jh, "lib", f), java_rpath) for f in ("jspawnhelper", "jexec")]
  for path, rpath in jobs:
    if os.path.isfile(path) and not os.path.islink(path):
      run(patchelf + ["--set-interpreter", ldso, "--force-rpath", "--set-rpath", rpath, path])
  # The JDK's config symlinks point at /etc/java-21-openjdk, which only the prefix has.
  etc = "/etc/java-%s-openjdk/" % JDK
  for dirpath, dirnames, filenames in os.walk(jh):
    for f in dirnames + filenames:
      p = os.path.join(dirpath, f)
      if os.path.islink(p) and os.readlink(p).startswith(etc):
        target = prefix + os.readlink(p)
        os.unlink(p)
        os.symlink(target, p)
  return ldso, lib, jh


def manifest_class_path(jar):
  try:
    with zipfile.ZipFile(jar) as z:
      text = z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
  except (OSError, KeyError, zipfile.BadZipFile):
    return []
  text = text.replace("\r\n", "\n").replace("\n ", "")
  for line in text.split("\n"):
    if line.startswith("Class-Path:"):
      return line[len("Class-Path:"):].split()
  return []


def write_classpath(prefix):
  """Points Debian's client classpath file at the prefix's jars.

  The jars that only manifests name (perfmark among them: without it the server
  starts but the client never connects) go first so that our copies win over
  any host copies the JVM would add after each jar.
  """
  base_dir = os.path.join(prefix, "usr/share/bazel")
  cpfile = os.path.join(base_dir, "bazel_classpath_debian_depends.txt")
  listed = [l.strip() for l in open(cpfile) if l.strip()]
  relocate = lambda p: prefix + p if p.startswith("/usr/") else p
  base = [relocate(p) for p in listed]
  seen, out, todo = set(), [], list(base)
  while todo:
    jar = relocate(todo.pop(0))
    if jar in seen or not os.path.exists(jar):
      continue
    seen.add(jar)
    out.append(jar)
    todo.extend(c if c.startswith("/") else os.path.join(os.path.dirname(jar), c)
                for c in manifest_class_path(jar))
  data_dir = os.path.join(prefix, "usr/share/bazel-build-data")
  os.makedirs(data_dir, exist_ok=True)
  # Debian strips the build data; without it `bazel version` and
  # native.bazel_version are empty and bazel_features assumes the newest Bazel.
  with open(os.path.join(data_dir, "build-data.properties"), "w") as f:
    f.write("build.label=%s\nbuild.target=Debian bazel-bootstrap (sid), offline prefix\n"
            "build.timestamp=Thu Jan 01 00:00:00 1970 (0)\nbuild.timestamp.as.int=0\n" % BAZEL_VERSION)
  ordered = [j for j in out if j not in base] + [j for j in out if j in base] + [data_dir]
  with open(cpfile, "w") as f:
    f.write("\n".join(ordered) + "\n")


def write_rc(cache, prefix, jh, python, bundle):
  base = os.path.join(prefix, "usr/share/bazel")
  stubs = os.path.join(prefix, "usr/share/bazel-offline-stubs")
  # Stub modules: needed only to resolve @bazel_tools' own MODULE.bazel offline.
  for name in ("apple_support", "protobuf", "buildozer", "zlib"):
    os.makedirs(os.path.join(stubs, name), exist_ok=True)
    with open(os.path.join(stubs, name, "MODULE.bazel"), "w") as f:
      f.write('module(name = "%s")\n' % name)
    with open(os.path.join(stubs, name, "BUILD"), "w") as f:
      if name == "zlib":
        f.write('cc_library(name = "zlib", linkopts = ["-lz"], visibility = ["//visibility:public"])\n')
  overrides = {
      "platforms": "tools/platforms", "rules_java": "rules/java", "rules_cc": "rules/cc",
      "bazel_features": "tools/features", "bazel_skylib": "tools/skylib",
      "rules_license": "rules/license", "rules_python": "rules/python", "rules_proto": "rules/proto",
  }
  lines = [
      "# Generated by third_party/offline_bazel/provision.py: offline Bazel from Debian sid.",
      "startup --install_base=%s" % base,
      "startup --trust_install_base",
      "startup --server_javabase=%s" % jh,
      "startup --output_user_root=%s" % os.path.join(cache, "out"),
      "# Debian's Bazel writes MODULE.bazel.lock as {}; there is no registry to lock against.",
      "common --lockfile_mode=off",
      "common --noenable_workspace",
      "# The CPython 3.11 of the toolchain and pip.parse (third_party/python/interpreter.bzl).",
      "common --repo_env=MNV2_PYTHON=%s" % python,
      "# pip.parse's pip (its own certifi otherwise) trusts the system's CA bundle, as the JDK does.",
      "common --repo_env=REQUESTS_CA_BUNDLE=%s" % bundle,
  ]
  lines += ["common --override_module=%s=%s/%s" % (m, base, p) for m, p in sorted(overrides.items())]
  lines += ["common --override_module=%s=%s/%s" % (m, stubs, m)
            for m in ("apple_support", "protobuf", "buildozer", "zlib")]
  with open(os.path.join(cache, "offline.bazelrc"), "w") as f:
    f.write("\n".join(lines) + "\n")


def verify_linkage(prefix, ldso, lib, jh):
  targets = [os.path.join(prefix, "usr/bin/bazel"), os.path.join(jh, "bin/java"),
             os.path.join(jh, "lib/server/libjvm.so")]
  targets += glob.glob(os.path.join(prefix, "usr/libexec", TRIPLET, "bazel", "*"))
  tmp = tempfile.mkdtemp()
  try:
    with zipfile.ZipFile(os.path.join(prefix, "usr/share/bazel/A-server.jar")) as z:
      targets.append(z.extract("main/native/libunix_jni.so", tmp))
    for path in targets:
      out = subprocess.run([ldso, "--library-path", lib, "--list", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True).stdout
      bad = [l.strip() for l in out.splitlines()
             if "not found" in l or ("=>" in l and "=> " + prefix not in l)]
      if bad:
        raise ProvisionError("%s does not link inside the prefix: %s" % (os.path.basename(path), bad[0]))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def self_test(cache, prefix):
  ws = tempfile.mkdtemp(dir=cache, prefix=".selftest-")
  try:
    open(os.path.join(ws, "MODULE.bazel"), "w").close()
    bazel = [os.path.join(prefix, "usr/bin/bazel"), "--nosystem_rc", "--nohome_rc",
             "--bazelrc=" + os.path.join(cache, "offline.bazelrc")]
    out = subprocess.run(bazel + ["version"], cwd=ws, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    subprocess.run(bazel + ["shutdown"], cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if "Build label: %s" % BAZEL_VERSION not in out.stdout:
      raise ProvisionError("`bazel version` did not say %s: %s" % (BAZEL_VERSION, out.stdout[-300:]))
  finally:
    shutil.rmtree(ws, ignore_errors=True)


def provision(cache, stamp):
  check_host()
  bundle = truststore.system_bundle()
  if bundle is None:
    raise ProvisionError("no CA bundle on this machine (install ca-certificates)")
  hermetic = python311.wants_hermetic()
  prefix = os.path.join(cache, "prefix")
  mirror = host_mirror()
  apt = Apt(os.path.join(cache, "apt"), mirror)
  names, paths, pkgs = fetch_current(apt, lambda p, v: resolve(read_package_list(), p, v),
                                     os.path.join(cache, "debs"))
  version = pkgs["bazel-bootstrap"]["Version"]
  if not version.startswith(BAZEL_VERSION + "+"):
    raise ProvisionError("sid's bazel-bootstrap is now %s, not %s" % (version, BAZEL_VERSION))

  stop_servers(os.path.join(cache, "out"), prefix)
  say("unpacking into %s" % prefix)
  shutil.rmtree(prefix, ignore_errors=True)
  os.makedirs(prefix)
  for name in names:
    run(["dpkg-deb", "-x", paths[name], prefix])
  ldso, lib, jh = patch_executables(prefix)
  # Debian's JDK trusts /etc/ssl/certs/java/cacerts, which only Java packages
  # create: trust the system's CA bundle instead (tools/bazel keeps it fresh).
  cacerts = os.path.join(cache, "java-cacerts")
  truststore.write_trust_store(cacerts, bundle)
  os.unlink(os.path.join(jh, "lib/security/cacerts"))
  os.symlink(cacerts, os.path.join(jh, "lib/security/cacerts"))
  write_classpath(prefix)
  if hermetic:
    say("the build's Python: %s, so Debian %s's CPython 3.11 goes into the cache"
        % (hermetic, python311.SUITE))
    python = python311.provision_python(cache, mirror, [ldso, "--library-path", lib,
                                                        os.path.join(prefix, "usr/bin/patchelf")])
  else:
    shutil.rmtree(os.path.join(cache, "python"), ignore_errors=True)
    python = python311.HOST_PYTHON
  write_rc(cache, prefix, jh, python, bundle)
  say("verifying linkage and `bazel version`")
  verify_linkage(prefix, ldso, lib, jh)
  self_test(cache, prefix)
  with open(os.path.join(cache, "READY.tmp"), "w") as f:
    f.write(stamp + "\n")
  os.replace(os.path.join(cache, "READY.tmp"), os.path.join(cache, "READY"))
  say("Bazel %s ready (bazel-bootstrap %s); the build's Python: %s (%s)"
      % (BAZEL_VERSION, version, python, python311.host_version(python)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cache", required=True)
  parser.add_argument("--stamp", required=True)
  args = parser.parse_args()
  os.makedirs(args.cache, exist_ok=True)
  with open(os.path.join(args.cache, ".lock"), "w") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      say("another run is provisioning Bazel; waiting for it")
      fcntl.flock(lock, fcntl.LOCK_EX)
    ready = os.path.join(args.cache, "READY")
    if os.path.exists(ready) and open(ready).read().strip() == args.stamp:
      return 0
    say("first run: provisioning Bazel %s from Debian sid into %s (about a minute)"
        % (BAZEL_VERSION, args.cache))
    try:
      provision(args.cache, args.stamp)
    except (ProvisionError, subprocess.CalledProcessError, OSError) as e:
      print("tools/bazel: cannot provision the offline Bazel (%s); re-run to retry, or install bazelisk "
            "(it reads .bazelversion)" % e, file=sys.stderr)
      return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
