#!/usr/bin/env bash
# Debian packages the tests use: graphviz (qplan graphs), chromium (the report test),
# tcpdump (the capture on a Slurm test node).
# The Slurm packages are installed by tests/slurm/cluster.sh when the tests start it.
# Without root this only reports what is missing; those tests then skip.
set -euo pipefail
missing=()
command -v dot >/dev/null || missing+=(graphviz)
command -v chromium >/dev/null || missing+=(chromium)
command -v tcpdump >/dev/null || missing+=(tcpdump)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-packages: not root; missing ${missing[*]} (tests that need them will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
  { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
echo "system-packages: installed ${missing[*]}"
