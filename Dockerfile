# syntax=docker/dockerfile:1.7
# One image for every tickcast service: `docker run tickcast <subcommand>`.
#
#   docker build -t tickcast .                                  # CPU (burn flex): the last stage
#   docker build -t tickcast:gpu --target runtime-gpu \
#          --build-arg FEATURES=wgpu .                           # LSTM on a GPU (burn wgpu)
#
# A build without --target produces the LAST stage (Docker's and podman's rule), so the CPU
# runtime stays last: every service of docker-compose.yml runs it, and it sets no device.
# Dependency caching: the cargo registry and target directory are BuildKit cache mounts, so a
# rebuild after a source change compiles only tickcast's own crates.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ARG FEATURES=""
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tickcast ${FEATURES:+--features $FEATURES} \
 && install -D target/release/tickcast /out/tickcast

# What both runtimes share: the user, the health check, the entry point; no binary yet.
FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tickcast --create-home tickcast
WORKDIR /var/lib/tickcast
ENV RUST_LOG=info
EXPOSE 8080 9100
# Services override this with their own URL (the API's /readyz, a stage's /metrics).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["tickcast", "healthcheck", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["tickcast"]
CMD ["--help"]

# The forecaster on a GPU: the Vulkan loader and Mesa's drivers; with the NVIDIA container
# toolkit (`NVIDIA_DRIVER_CAPABILITIES` including `graphics`) the driver's own Vulkan ICD is
# mounted in and burn-wgpu picks the GPU. Without a GPU it falls back to the CPU with a warning.
# Build it with --build-arg FEATURES=wgpu: without it the binary is CPU-only, and the LSTM
# falls back to the CPU with a warning that says so.
FROM runtime-base AS runtime-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/tickcast /usr/local/bin/tickcast
USER tickcast
ENV TICKCAST_LSTM_DEVICE=wgpu \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

# The CPU runtime, last so that it is what a build without --target gives.
FROM runtime-base AS runtime
COPY --from=build /out/tickcast /usr/local/bin/tickcast
USER tickcast
