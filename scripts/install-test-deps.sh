#!/usr/bin/env bash
# The system packages the test suites need beyond the Python environment: Debian's Chromium
# (driven by Playwright) with fonts for its screenshots, and PostgreSQL's server binaries
# (deploy/local-postgres); make, for .ci/run on a bare machine. Idempotent: when everything
# is present it only checks files and returns at once; apt-get runs only for what is missing.
# `make test` and `make test-fast` run it first. With the argument `compose` it also checks what
# `make compose-test` needs: Debian's Docker engine, Compose 1.29 and mmdebstrap.
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -d /usr/share/fonts/truetype/liberation ]] || missing+=(fonts-liberation)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v make >/dev/null || missing+=(make)
if [[ "${1:-}" == compose ]]; then
  [[ -x /usr/sbin/dockerd && -x /usr/bin/docker ]] || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
fi

((${#missing[@]})) || exit 0

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "the tests need Debian packages: ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "installing ${missing[*]} from Debian's packages" >&2
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
