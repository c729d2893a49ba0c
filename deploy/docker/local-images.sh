#!/bin/bash
# Local stand-ins for every public image deploy/docker/docker-compose.yaml and the project's
# Dockerfiles name, under the same names and tags, for a machine that can reach the package
# registries (PyPI, Debian, npm) but no image registry. Each stand-in is built from Debian
# packages (a root file system made by mmdebstrap, turned into an image with `docker import`)
# and carries this machine's CA bundle, so builds inside it reach the registries too.
# Nothing here changes the real Dockerfiles or the Compose file; with internet access, skip this.
#
#   deploy/docker/local-images.sh           # builds the stand-ins that are missing
#   deploy/docker/local-images.sh --force   # rebuilds them all
# Needs: docker (an engine running), mmdebstrap, pip. Prints each image's build time and size.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
compose_file=$here/docker-compose.yaml
DOCKER=${DOCKER:-docker}
force=${1:-}

# The names come from the files that use them, so a new tag there is built here under that tag.
dockerfile_default() {  # the default of ARG $1 in Dockerfile.code
    sed -n "s/^ARG $1=//p" "$here/Dockerfile.code"
}
compose_image() {  # the image: of the service whose image name contains $1
    grep -E "^\s+image: \S*$1" "$compose_file" | head -n 1 | awk '{print $2}'
}
python_image=$(dockerfile_default PYTHON_IMAGE)
uv_image=$(dockerfile_default UV_IMAGE)
postgres_image=$(compose_image postgres:)
minio_image=$(compose_image minio/minio:)
mc_image=$(compose_image minio/mc:)
proxy_image=$(compose_image docker-socket-proxy:)
debian_image=skin-cancer-stand-in/debian:bookworm
for name in python_image uv_image postgres_image minio_image mc_image proxy_image; do
    [ -n "${!name}" ] || { echo "local-images.sh: found no $name in $compose_file or Dockerfile.code" >&2; exit 1; }
done

exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
report() {  # image, seconds
    local size
    size=$("$DOCKER" image inspect --format '{{.Size}}' "$1")
    printf 'stand-in %-50s built in %4ds, %5d MB\n' "$1" "$2" $((size / 1000000))
}
needed() { [ "$force" = --force ] || ! exists "$1"; }

context=$(mktemp -d /var/tmp/skin-cancer-stand-ins.XXXXXX)
trap 'rm -rf "$context"' EXIT
cp "$here"/stand-ins/* "$context"/
# The CA bundle pip trusts on this machine (global.cert); images trust it from here on.
ca_bundle=$(python3 -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)
cp "$ca_bundle" "$context/ca-certificates.crt"

if needed "$debian_image" || needed "$python_image"; then
    start=$SECONDS
    mmdebstrap --quiet --variant=apt --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm - | "$DOCKER" import - "$debian_image" >/dev/null
    report "$debian_image" $((SECONDS - start))
fi

build() {  # image, Dockerfile in stand-ins/
    needed "$1" || { echo "stand-in $1 exists (--force rebuilds it)"; return; }
    local start=$SECONDS
    DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --build-arg "DEBIAN_IMAGE=$debian_image" \
        --build-arg "PYTHON_IMAGE=$python_image" -f "$context/$2" -t "$1" "$context" >/dev/null
    report "$1" $((SECONDS - start))
}

build "$python_image" Dockerfile.python
if needed "$uv_image"; then
    uv_version=${uv_image##*:}
    pip download --quiet --no-deps --only-binary=:all: --dest "$context/uv-wheel" "uv==$uv_version"
    python3 -m zipfile -e "$context"/uv-wheel/uv-*.whl "$context/uv-wheel/unpacked"
    install -m 755 "$context"/uv-wheel/unpacked/uv-*.data/scripts/{uv,uvx} "$context"/
fi
build "$uv_image" Dockerfile.uv
build "$postgres_image" Dockerfile.postgres
build "$minio_image" Dockerfile.s3
if needed "$mc_image"; then
    "$DOCKER" tag "$minio_image" "$mc_image"
    echo "stand-in $mc_image is $minio_image (its mc script)"
fi
build "$proxy_image" Dockerfile.docker-proxy
