# Shared by scripts/build_image.sh and scripts/test_image.sh (sourced): podman, and the flags
# every podman call here needs on these VMs.

ensure_podman() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  if ((${#missing[@]})); then
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "image: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
      { "${sudo[@]}" apt-get update -q >&2 &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
  fi
  podman_run_flags=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
  local runtime="${CONTAINER_RUNTIME:-}"
  [[ -n "$runtime" ]] || ! command -v runc >/dev/null || runtime=runc
  [[ -z "$runtime" ]] || podman_run_flags=(--runtime "$runtime" "${podman_run_flags[@]}")
}
