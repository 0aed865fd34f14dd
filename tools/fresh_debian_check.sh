#!/usr/bin/env bash
# Tries the repository as a new user would, on a fresh minimal Debian:
#   1. a minbase root made with debootstrap from this machine's own Debian mirror
#      (python3, python3-venv, git, ca-certificates, gcc/g++, unzip, zip, xz-utils;
#      no Java), with the CAs this machine added locally (a TLS-intercepting
#      proxy's), its DNS configuration and its apt settings for reaching the
#      mirror (proxy, Check-Valid-Until);
#   2. a clone of this repository's current commit in it;
#   3. inside (chroot, /proc /dev /sys mounted, the host's network, a clean
#      environment): the README's two commands, then .ci/run;
#   4. pass/fail and the time of each step, then the root is removed.
# Usage (root; about 45 minutes on 2 cores, 16-19 GB in /var/tmp):
#   tools/fresh_debian_check.sh [--suite trixie] [--no-ci] [--keep]
# Not part of `bazel test //...`: it needs root, debootstrap and the network.
set -euo pipefail
suite=trixie ci=1 keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --suite) suite="$2"; shift 2 ;;
    --no-ci) ci=0; shift ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--suite SUITE] [--no-ci] [--keep]" >&2; exit 2 ;;
  esac
done
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "fresh_debian_check: $*" >&2; exit 1; }
[[ "$(id -u)" == 0 ]] || fail "needs root (debootstrap and chroot)"
[[ "$(uname -m)" == x86_64 ]] || fail "needs an x86-64 host (this is $(uname -m))"
command -v debootstrap >/dev/null || fail "needs debootstrap (apt-get install debootstrap)"
mirror="$(python3 -c "import sys; sys.path.insert(0, sys.argv[1]); import debian_archive as d; print(d.host_mirror())" \
  "$repo/third_party/offline_bazel")" || fail "could not read a Debian mirror from this machine's apt configuration"
commit="$(git -C "$repo" rev-parse HEAD)"
[[ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ]] \
  || echo "fresh_debian_check: uncommitted changes are not in the clone; checking $commit" >&2

root="$(mktemp -d "${TMPDIR:-/var/tmp}/mnv2-fresh-$suite.XXXXXX")"
log="$root.log"
mounted=()
cleanup() {
  # Stop what runs inside the root (the Bazel server), by process id.
  if [[ -d "$root/root/mobilenet_v2" && -d "$root/proc/self" ]]; then
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      bash -c 'cd /root/mobilenet_v2 && (cd examples/consumer && ../../tools/bazel shutdown); tools/bazel shutdown' \
      >/dev/null 2>&1 || true
  fi
  for p in /proc/[0-9]*; do
    if [[ "$(readlink "$p/root" 2>/dev/null)" == "$root" ]]; then kill "${p#/proc/}" 2>/dev/null || true; fi
  done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  if [[ "$keep" == 1 ]]; then
    echo "fresh_debian_check: kept $root (remove it with: rm -rf --one-file-system $root)" >&2
  else
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT

secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
results=()
step() {  # step NAME COMMAND...: runs it, records pass/fail and time
  local name="$1" start=$SECONDS status=0
  shift
  echo "=== $name" | tee -a "$log"
  "$@" >>"$log" 2>&1 || status=$?
  local verdict=PASS
  [[ $status -eq 0 ]] || verdict="FAIL (exit $status)"
  results+=("$(printf '%-44s %-16s %s' "$name" "$verdict" "$(secs $((SECONDS - start)))")")
  echo "    $verdict in $(secs $((SECONDS - start)))"
  return $status
}
inside() {  # a login-like clean environment; proxies pass through
  local envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
  local v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n "${!v:-}" ]] && envs+=("$v=${!v}")
  done
  chroot "$root" /usr/bin/env -i "${envs[@]}" bash -c "cd /root/mobilenet_v2 && $1"
}
mount_all() {
  for d in proc sys dev dev/pts; do
    mkdir -p "$root/$d"
    case "$d" in
      proc) mount -t proc proc "$root/proc" ;;
      sys) mount --rbind /sys "$root/sys" ;;
      *) mount --bind "/$d" "$root/$d" ;;
    esac
    mounted+=("$root/$d")
  done
}
prepare() {
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # How this machine reaches its mirror (a proxy; a snapshot mirror whose
  # Release files are past Valid-Until needs Check-Valid-Until "false").
  apt-config dump Acquire | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
    >"$root/etc/apt/apt.conf.d/99from-host" || true
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates
  fi
  git clone -q "$repo" "$root/root/mobilenet_v2"
  git -C "$root/root/mobilenet_v2" checkout -q --detach "$commit"
}

echo "fresh_debian_check: Debian $suite minbase in $root, commit ${commit:0:12}; log: $log"
status=0
step "debootstrap $suite minbase" debootstrap --variant=minbase \
  --include=python3,python3-venv,git,ca-certificates,gcc,g++,libc6-dev,unzip,zip,xz-utils \
  "$suite" "$root" "$mirror" || status=$?
if [[ $status -eq 0 ]]; then
  mount_all
  step "clone + local CAs" prepare || status=$?
fi
if [[ $status -eq 0 ]]; then
  python="$(chroot "$root" python3 -c 'import sys; print(sys.version.split()[0])')"
  step "tools/bazel version" inside "tools/bazel version" || status=$?
fi
[[ $status -ne 0 ]] || step "tools/bazel test //..." inside "tools/bazel test //..." || status=$?
[[ $status -ne 0 ]] || step "tools/bazel run //mobilenet/tflite:convert" \
  inside "tools/bazel run //mobilenet/tflite:convert -- --save_to out/ && ls out/*.tflite" || status=$?
[[ $status -ne 0 || $ci -eq 0 ]] || step ".ci/run" inside ".ci/run" || status=$?
build_python="$(grep -o 'the build.s Python: .*' "$log" | tail -n1 || true)"

echo
echo "Debian $suite minbase (host python3 ${python:-?}), commit ${commit:0:12}; ${build_python:-}"
printf '%s\n' "${results[@]}"
if [[ $status -eq 0 ]]; then
  grep -E "^Executed|tests pass|passed, .* failed" "$log" | tail -n 3 || true
  echo "fresh_debian_check: PASS"
else
  tail -n 30 "$log"
  echo "fresh_debian_check: FAIL (full log: $log)"
fi
exit $status
