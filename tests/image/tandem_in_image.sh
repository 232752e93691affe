#!/usr/bin/env bash
# Stands in for the tandem binary in the e2e tests (TANDEM_BIN): runs `tandem ARGS...` in the
# image instead. Host network (the tests pick free ports and connect to 127.0.0.1), the model
# file and /tmp (the tests' token files and logs) mounted, the invoking user's uid (the tests'
# token files are mode 0600; scripts/test_image.sh also runs the image as its own user 10001).
# SIGTERM to this process reaches `tandem up` in the container (podman's signal proxy).
set -euo pipefail
source "$(dirname "$0")/../../scripts/image_common.sh"
ensure_podman
mounts=(-v /tmp:/tmp)
[[ -n "${TANDEM_MODEL:-}" ]] && mounts+=(-v "$TANDEM_MODEL:$TANDEM_MODEL:ro")
exec podman run --rm -i --network host --label tandem-image-test=1 "${podman_run_flags[@]}" \
  --user "$(id -u):$(id -g)" "${mounts[@]}" "${TANDEM_IMAGE:-tandem:latest}" "$@"
