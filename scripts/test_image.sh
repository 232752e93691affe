#!/usr/bin/env bash
# Tests the image `make image` built, as an operator would use it (make test-image):
#  1. `podman run -p 127.0.0.1:PORT:8000 IMAGE` with nothing else: `tandem up` as the image's own
#     non-root user, the bundled model from inside the image, a chat completion through it, and
#     a clean stop (exit 0) on SIGTERM;
#  2. the OpenAI-client e2e tests (tests/e2e/test_openai_api.py, test_openai_sampling.py) with
#     every `tandem` they start running in the image (tests/image/tandem_in_image.sh).
# usage: scripts/test_image.sh [--image NAME] [--tandem BINARY]
#   (defaults: tandem:latest; build/tandem, used to fetch the bundled model the e2e tests pass)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image=tandem:latest tandem="$root/build/tandem"
while (($#)); do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --tandem) tandem="$2"; shift 2 ;;
    *) sed -n 2,10p "$0" >&2; exit 2 ;;
  esac
done
source "$root/scripts/image_common.sh"
ensure_podman
podman image exists "$image" || { echo "test_image: no image $image; run make image first" >&2; exit 1; }
cleanup() { podman ps -aq --filter label=tandem-image-test=1 | xargs -r podman rm -f >/dev/null 2>&1 || true; }
trap cleanup EXIT
py="$root/.venv-test/bin/python"
[[ -x "$py" ]] || "$root/scripts/setup_test_venv.sh"

echo "test_image: 1. tandem up in $image as its own user, published on 127.0.0.1:18000" >&2
user="$(podman image inspect --format '{{.Config.User}}' "$image")"
[[ "$user" == 10001:10001 ]] || { echo "test_image: the image runs as '$user', not 10001:10001" >&2; exit 1; }
podman run -d --name tandem-image-smoke --label tandem-image-test=1 "${podman_run_flags[@]}" \
  -p 127.0.0.1:18000:8000 "$image" >/dev/null
"$py" - <<'PY'
import sys, time, openai
client = openai.OpenAI(base_url="http://127.0.0.1:18000/v1", api_key="unused", max_retries=0, timeout=120)
deadline = time.monotonic() + 180
while True:
    try:
        model = client.models.list().data[0].id
        break
    except Exception as e:  # not up yet
        if time.monotonic() > deadline:
            sys.exit(f"test_image: the container's API did not come up: {e}")
        time.sleep(2)
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a color."}],
                                   max_tokens=16, temperature=0)
text = r.choices[0].message.content
assert text and r.usage.completion_tokens > 0, r
print(f"test_image: {model} answered {text!r} ({r.usage.completion_tokens} tokens)", file=sys.stderr)
PY
[[ "$(podman exec tandem-image-smoke id -u)" == 10001 ]] || { echo "test_image: tandem runs as root" >&2; exit 1; }
podman stop -t 60 tandem-image-smoke >/dev/null
rc="$(podman inspect --format '{{.State.ExitCode}}' tandem-image-smoke)"
[[ "$rc" == 0 ]] || { podman logs tandem-image-smoke 2>&1 | tail -30 >&2; echo "test_image: tandem up exited $rc on SIGTERM" >&2; exit 1; }
podman rm tandem-image-smoke >/dev/null

echo "test_image: 2. the OpenAI-client e2e tests against tandem in $image" >&2
model="$("$tandem" model fetch)"
TANDEM_IMAGE="$image" TANDEM_BIN="$root/tests/image/tandem_in_image.sh" TANDEM_MODEL="$model" \
  PYTHONDONTWRITEBYTECODE=1 "$py" -m pytest -q -p no:cacheprovider \
  "$root/tests/e2e/test_openai_api.py" "$root/tests/e2e/test_openai_sampling.py"
echo "test_image: passed" >&2
