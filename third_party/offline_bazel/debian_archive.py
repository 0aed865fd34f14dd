"""A private apt view of one Debian suite: index, dependency closure, verified .debs.

Shared by the offline Bazel (sid) and the build's CPython 3.11 (bookworm).  The
mirror is read from this machine's own apt configuration; the host's apt state
is never touched.
"""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

START = time.time()


class ProvisionError(Exception):
  pass


def say(msg):
  print("[offline-bazel %3ds] %s" % (time.time() - START, msg), file=sys.stderr, flush=True)


def run(cmd, **kw):
  return subprocess.run(cmd, check=True, **kw)


def host_mirror():
  """First non-security `deb` URI of the host's apt sources (deb822 first)."""
  for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
      fields = dict(
          (k.strip(), v.strip())
          for k, _, v in (l.partition(":") for l in stanza.splitlines() if l and l[0] not in " #"))
      if fields.get("Enabled", "yes") == "no" or "deb" not in fields.get("Types", "").split():
        continue
      if "security" in fields.get("Suites", "") or not fields.get("URIs"):
        continue
      return fields["URIs"].split()[0].rstrip("/")
  for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    if not os.path.exists(path):
      continue
    for line in open(path):
      line = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
      if len(line) >= 3 and line[0] == "deb" and "security" not in line[2]:
        return line[1].rstrip("/")
  raise ProvisionError("could not read a Debian mirror from this machine's apt configuration")


# ----------------------------------------------------------------- apt index
class Apt:
  """apt-get with a private state directory pointed at one suite of the mirror."""

  def __init__(self, root, mirror, suite="sid"):
    self.root = root
    self.suite = suite
    for d in ("lists/partial", "cache/archives/partial"):
      os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "sources.list"), "w") as f:
      f.write("deb %s %s main\n" % (mirror, suite))
    open(os.path.join(root, "status"), "a").close()
    self.opts = [
        "-oDir::Etc::SourceList=%s/sources.list" % root, "-oDir::Etc::SourceParts=/dev/null",
        "-oDir::State::Lists=%s/lists" % root, "-oDir::Cache=%s/cache" % root,
        "-oDir::State::status=%s/status" % root, "-oAPT::Sandbox::User=root",
        "-oAcquire::GzipIndexes=false", "-oDebug::NoLocking=true"
    ]

  def packages_file(self):
    found = glob.glob(os.path.join(self.root, "lists", "*_%s_main_binary-amd64_Packages" % self.suite))
    return found[0] if found else None

  def update(self, force=False):
    if force or not self.packages_file():
      say("fetching %s's package index" % self.suite)
      r = subprocess.run(["apt-get"] + self.opts + ["-q", "update"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
      if r.returncode != 0 or not self.packages_file():
        raise ProvisionError("the Debian archive is not reachable (apt-get update for %s failed: %s)"
                             % (self.suite, r.stdout.strip().splitlines()[-1:]))

  def index(self):
    pkgs, provides = {}, {}
    for stanza in open(self.packages_file()).read().split("\n\n"):
      fields = {}
      for line in stanza.splitlines():
        if line and line[0] not in " \t" and ":" in line:
          k, _, v = line.partition(":")
          fields[k] = v.strip()
      name = fields.get("Package")
      if name:
        pkgs[name] = fields
        for p in fields.get("Provides", "").split(","):
          if p.strip():
            provides.setdefault(p.split()[0], name)
    return pkgs, provides

  def download(self, specs, dest):
    # stdout stays clean for the Bazel command that follows; progress goes to stderr.
    run(["apt-get"] + self.opts + ["-q", "download"] + specs, cwd=dest, stdout=sys.stderr)


def dependency_closure(pkgs, provides, roots):
  """Library packages reachable from roots through Depends/Pre-Depends."""
  seen, todo = set(), list(roots)
  while todo:
    name = todo.pop()
    if name in seen or name not in pkgs:
      continue
    seen.add(name)
    for field in ("Pre-Depends", "Depends"):
      for alt in pkgs[name].get(field, "").split(","):
        for choice in alt.split("|"):
          dep = choice.strip().split(" ")[0].split(":")[0]
          dep = dep if dep in pkgs else provides.get(dep)
          if dep:
            if dep.startswith("lib") or dep in roots:
              todo.append(dep)
            break
  return seen


def sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def fetch_debs(apt, names, pkgs, debs):
  """Returns the verified .deb path of every package, downloading what is missing."""
  os.makedirs(debs, exist_ok=True)
  paths, need = {}, []
  for name in names:
    meta = pkgs[name]
    path = os.path.join(debs, os.path.basename(meta["Filename"]))
    paths[name] = path
    if not (os.path.exists(path) and sha256(path) == meta["SHA256"]):
      need.append(name)
  if need:
    say("downloading %d packages (%.0f MB)" % (len(need), sum(int(pkgs[n]["Size"]) for n in need) / 1e6))
    tmp = tempfile.mkdtemp(dir=debs, prefix=".partial-")
    try:
      apt.download(["%s=%s" % (n, pkgs[n]["Version"]) for n in need], tmp)
      for name in need:
        got = os.path.join(tmp, os.path.basename(pkgs[name]["Filename"]))
        got = got if os.path.exists(got) else glob.glob(os.path.join(tmp, name + "_*.deb"))[0]
        if sha256(got) != pkgs[name]["SHA256"]:
          raise ProvisionError("%s: checksum does not match %s's index"
                               % (os.path.basename(got), apt.suite))
        os.replace(got, paths[name])
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return paths


def fetch_current(apt, names_for, debs):
  """(names, {name: .deb path}, index) for names_for(pkgs, provides) -> package names.

  A suite moves (sid daily, stable at point releases): a stale index names .debs
  the archive no longer has, so a failure refreshes the index once and retries.
  """
  apt.update()
  try:
    pkgs, provides = apt.index()
    names = names_for(pkgs, provides)
    return names, fetch_debs(apt, names, pkgs, debs), pkgs
  except (ProvisionError, subprocess.CalledProcessError):
    apt.update(force=True)
    pkgs, provides = apt.index()
    names = names_for(pkgs, provides)
    return names, fetch_debs(apt, names, pkgs, debs), pkgs
