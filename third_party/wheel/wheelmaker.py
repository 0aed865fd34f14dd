"""Writes a pure-Python wheel (PEP 427) from a list of files.

`--file` names each file inside the wheel and the matching `--path` where it
is now; `.py` files make their directories packages, other files are package
data.  `--console_script NAME=module:function` becomes entry_points.txt.
"""

import argparse
import base64
import hashlib
import zipfile

# Fixed timestamps make the wheel byte-identical from build to build.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data):
  digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
  return "sha256=" + digest.decode()


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out", required=True)
  p.add_argument("--distribution", required=True)
  p.add_argument("--version", required=True)
  p.add_argument("--summary", default="")
  p.add_argument("--python_requires", default="")
  p.add_argument("--requires", action="append", default=[])
  p.add_argument("--file", action="append", default=[])
  p.add_argument("--path", action="append", default=[])
  p.add_argument("--console_script", action="append", default=[])
  a = p.parse_args()
  if len(a.file) != len(a.path):
    p.error("--file and --path must pair up")
  dist_info = "%s-%s.dist-info" % (a.distribution, a.version)
  entries = {}
  for arcname, path in sorted(zip(a.file, a.path)):
    with open(path, "rb") as f:
      entries[arcname] = f.read()
  # Namespace packages need no __init__.py, but plain imports of older tools do.
  # Data-only directories stay plain directories.
  for arcname in [n for n in entries if n.endswith(".py")]:
    parts = arcname.split("/")[:-1]
    for i in range(1, len(parts) + 1):
      entries.setdefault("/".join(parts[:i]) + "/__init__.py", b"")
  metadata = ["Metadata-Version: 2.1", "Name: " + a.distribution, "Version: " + a.version]
  if a.summary:
    metadata.append("Summary: " + a.summary)
  if a.python_requires:
    metadata.append("Requires-Python: " + a.python_requires)
  metadata += ["Requires-Dist: " + r for r in a.requires]
  entries[dist_info + "/METADATA"] = ("\n".join(metadata) + "\n").encode()
  entries[dist_info + "/WHEEL"] = (
      "Wheel-Version: 1.0\nGenerator: mobilenet_v2 wheelmaker\nRoot-Is-Purelib: true\n"
      "Tag: py3-none-any\n").encode()
  if a.console_script:
    scripts = sorted(s.split("=", 1) for s in a.console_script)
    entries[dist_info + "/entry_points.txt"] = (
        "[console_scripts]\n" + "".join("%s = %s\n" % (n, t) for n, t in scripts)).encode()
  record = ["%s,%s,%d" % (n, _record_hash(d), len(d)) for n, d in sorted(entries.items())]
  entries[dist_info + "/RECORD"] = ("\n".join(record + [dist_info + "/RECORD,,"]) + "\n").encode()
  with zipfile.ZipFile(a.out, "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in sorted(entries.items()):
      info = zipfile.ZipInfo(name, _EPOCH)
      info.compress_type = zipfile.ZIP_DEFLATED
      info.external_attr = 0o644 << 16
      z.writestr(info, data)


if __name__ == "__main__":
  main()
