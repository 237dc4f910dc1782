#!/usr/bin/env bash
# Sets up crr on a fresh machine of this kind (as root): system packages, npm packages,
# the generated protobuf code, the native addon, helper and stub, and the compiled TypeScript.
# Safe to run again; each step is quick when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for pkg in build-essential libmsgpack-dev chromium iproute2 postgresql tmux openjdk-17-jdk-headless redis-server nginx-light sqlite3 runc busybox-static memcached golang-go; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  echo "setup: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-fund --no-audit --loglevel=error >/dev/null
fi

echo "setup: building" >&2
npm run --silent build >/dev/null
echo "setup: done" >&2
