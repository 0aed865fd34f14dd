#!/usr/bin/env python3
"""A Java trust store for the offline Bazel, built from the system's CA bundle.

Debian's JDK links lib/security/cacerts to /etc/ssl/certs/java/cacerts, which
exists only where a Java package was installed (without it every download
ends in "the trustAnchors parameter must be non-empty").  The bundle OpenSSL,
curl and pip use is written as a JKS keystore of trusted certificates (the
format is small: no JVM or keytool run needed) and the JDK's cacerts points at
it.  tools/bazel rewrites it when the bundle is newer (a CA added with
update-ca-certificates, e.g. a TLS-intercepting proxy's).
"""

import argparse
import base64
import hashlib
import os
import re
import struct
import sys

# Where the common distributions keep the PEM bundle of the trusted CAs.
BUNDLES = ("/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch, Gentoo, Alpine
           "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
           "/etc/ssl/ca-bundle.pem",  # openSUSE
           "/etc/ssl/cert.pem")
PASSWORD = "changeit"  # Java's conventional cacerts password (integrity only)


def system_bundle():
  env = os.environ.get("SSL_CERT_FILE")
  for path in ([env] if env else []) + list(BUNDLES):
    if os.path.isfile(path):
      return path
  return None


def pem_certificates(text):
  blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)
  return [base64.b64decode("".join(b.split())) for b in blocks]


def _utf(s):
  data = s.encode("utf-8")
  return struct.pack(">H", len(data)) + data


def jks(certs, password=PASSWORD):
  """A JKS keystore (version 2) holding every DER certificate as a trusted entry."""
  out = [struct.pack(">III", 0xFEEDFEED, 2, len(certs))]
  for der in certs:
    alias = "ca-" + hashlib.sha256(der).hexdigest()[:16]
    out.append(struct.pack(">I", 2) + _utf(alias) + struct.pack(">q", 0) + _utf("X.509")
               + struct.pack(">I", len(der)) + der)
  body = b"".join(out)
  digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite"
                        + body).digest()
  return body + digest


def write_trust_store(path, bundle):
  certs = list(dict.fromkeys(pem_certificates(open(bundle, encoding="latin-1").read())))
  if not certs:
    raise ValueError("%s holds no certificates" % bundle)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(jks(certs))
  os.replace(tmp, path)
  return len(certs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  bundle = system_bundle()
  if bundle is None:
    print("tools/bazel: no CA bundle on this machine (looked for %s); Bazel's downloads need one "
          "(install ca-certificates)" % ", ".join(BUNDLES), file=sys.stderr)
    return 1
  write_trust_store(args.out, bundle)
  return 0


if __name__ == "__main__":
  sys.exit(main())
