# The tandem image: one binary for every role (router, prefill/decode/mixed worker, controller,
# `tandem up`), CPU only (CUDA 13 is not in Debian's packages; a GPU image would start from a
# CUDA base with nvcc), with the bundled SmolLM2-135M-Instruct model inside.
#
#   make image                                    # podman; see scripts/build_image.sh
#   podman build -t tandem:latest .               # or docker; stage a model first (below)
#
# The model is fetched at build time, not at start: `make image` copies the bundled model from
# this machine's model store (`tandem model fetch`) into deploy/image/models/, and it is baked
# into /usr/share/tandem/models, the image's TANDEM_MODELS_DIR. A pod then starts in seconds with
# no network, and the image is the unit that is verified. Other models: mount them and pass
# --model (deploy/k8s mounts /models). Without a staged model the image has none, and
# `tandem up`/`worker` without --model say so.
#
# BASE_IMAGE: any Debian bookworm root filesystem. Everyone else gets debian:bookworm-slim; a
# machine that cannot reach a registry builds one from Debian's packages with mmdebstrap
# (scripts/build_image.sh does).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The build's Debian packages (scripts/setup.sh's list, less the tests', fuzzers' and tools').
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
      g++ make cmake ninja-build pkg-config \
      libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev zlib1g-dev libssl-dev libucx-dev \
      libboost1.74-dev libcurl4-openssl-dev libyaml-cpp-dev libxxhash-dev \
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY proto proto
COPY src src
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_BUILD_TESTS=OFF \
      -DTANDEM_BUILD_BENCH=OFF -DTANDEM_CUDA=OFF > /dev/null \
 && cmake --build /build --target tandem \
 && strip /build/tandem
# The runtime needs exactly the Debian packages that own the libraries the binary loads.
COPY deploy/image/runtime_packages.sh /usr/local/bin/
RUN runtime_packages.sh /build/tandem > /build/runtime-packages.txt && cat /build/runtime-packages.txt

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /build/runtime-packages.txt /tmp/
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --gid 10001 tandem \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin tandem
COPY --from=build /build/tandem /usr/local/bin/tandem
COPY deploy/image/models/ /usr/share/tandem/models/
ENV TANDEM_MODELS_DIR=/usr/share/tandem/models
# Checks the baked model once (size and SHA-256) and records it, so starts do not hash it again.
RUN tandem model fetch > /dev/null 2>&1 || echo "no bundled model in this image: pass --model" >&2
USER 10001:10001
WORKDIR /home/tandem
# 8000: the OpenAI HTTP API; 50051: the router's gRPC (public Generate and internal services).
EXPOSE 8000 50051
ENTRYPOINT ["tandem"]
CMD ["up", "--listen", "0.0.0.0"]
