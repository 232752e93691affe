#!/usr/bin/env bash
# Builds the tandem container image (Dockerfile) with podman, the bundled model inside.
#
# usage: scripts/build_image.sh [--image NAME] [--base IMAGE] [--tandem BINARY]
#   --image   the tag to build (default tandem:latest, as deploy/k8s names it)
#   --base    the Debian bookworm base (default debian:bookworm-slim). When that image is neither
#             present nor pullable (no registry reachable), one is built from Debian's packages
#             with mmdebstrap and tagged localhost/debian:bookworm-mmdebstrap.
#   --tandem  a host tandem binary used only to fetch and verify the bundled model (default build/tandem)
# Environment: CONTAINER_RUNTIME (podman's --runtime; default runc when installed: crun fails on
# some VMs).
# Installs podman, runc and mmdebstrap from Debian's packages when they are missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image=tandem:latest base=debian:bookworm-slim tandem="$root/build/tandem"
while (($#)); do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --tandem) tandem="$2"; shift 2 ;;
    *) sed -n 2,13p "$0" >&2; exit 2 ;;
  esac
done
source "$root/scripts/image_common.sh"
ensure_podman

start=$(date +%s)
if ! podman image exists "$base"; then
  echo "build_image: pulling $base" >&2
  if ! timeout 120 podman pull -q "$base" >/dev/null 2>&1; then
    local_base=localhost/debian:bookworm-mmdebstrap
    if ! podman image exists "$local_base"; then
      echo "build_image: $base cannot be pulled; building $local_base from Debian's packages (mmdebstrap)" >&2
      tmp="$(mktemp -d)"
      trap 'rm -rf "$tmp"' EXIT
      mmdebstrap --variant=apt --quiet bookworm "$tmp/rootfs.tar" http://deb.debian.org/debian
      podman import -q "$tmp/rootfs.tar" "$local_base" >/dev/null
    fi
    base="$local_base"
  fi
fi

echo "build_image: staging the bundled model" >&2
model="$("$tandem" model fetch)"
rm -f "$root"/deploy/image/models/*.gguf
cp "$model" "$root/deploy/image/models/"

echo "build_image: building $image from $base (compiles tandem: several minutes on 2 cores)" >&2
podman build "${podman_run_flags[@]}" --build-arg "BASE_IMAGE=$base" -t "$image" -f "$root/Dockerfile" "$root"
end=$(date +%s)
size="$(podman image inspect --format '{{.Size}}' "$image")"
echo "build_image: $image built in $((end - start)) s, $((size / 1024 / 1024)) MiB"
