# syntax=docker/dockerfile:1
#
# dsmr-bridge: static musl binary in a scratch image, for Home Assistant
# (image ghcr.io/dsmr-bridge/dsmr-bridge, see config.yaml) and plain Docker.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg BUILD_VERSION=0.1.0 -t ghcr.io/dsmr-bridge/dsmr-bridge:0.1.0 .
#
# Both architectures are cross-compiled on the build machine with
# cargo-zigbuild (zig as the C compiler and linker for ring); no QEMU.

# Set by the Supervisor (local builds) and by the release workflow.
ARG BUILD_VERSION=dev
# The Supervisor passes its architecture name (amd64, aarch64). The label
# io.hass.arch is derived from TARGETARCH instead, so that one multi-platform
# buildx run labels each image correctly.
ARG BUILD_ARCH
# Set by BuildKit from --platform.
ARG TARGETARCH

###############################################################################
# Builder: runs on the build machine's own platform.
FROM --platform=$BUILDPLATFORM rust:1-slim-bookworm AS builder

# zig (the cross C toolchain) and cargo-zigbuild, both as binary wheels from
# PyPI, in a venv (Debian's python is externally managed).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/zig \
 && /opt/zig/bin/pip install --no-cache-dir ziglang==0.14.1 cargo-zigbuild==0.24.1 \
 && rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
ENV PATH="/opt/zig/bin:${PATH}"

WORKDIR /src
COPY . .

ARG TARGETARCH
# --package dsmr-bridge builds the product alone, not the workspace's simulator crate
# (crates/dsmr-sim, which must still be in the context for cargo to load the workspace);
# --no-default-features leaves out `dsmr-bridge demo` (embedded broker and simulator).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "${TARGETARCH}" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && cargo zigbuild --release --locked --package dsmr-bridge --no-default-features --target "${target}" \
 && mkdir -p /out \
 && cp "target/${target}/release/dsmr-bridge" /out/dsmr-bridge

###############################################################################
# Root filesystem of the final image: CA bundle, users, /tmp, /data.
FROM --platform=$BUILDPLATFORM rust:1-slim-bookworm AS rootfs

# The rust image already ships Debian's ca-certificates.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/data \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf '%s\n' \
      'root:x:0:0:root:/root:/sbin/nologin' \
      'dsmr-bridge:x:1000:1000:dsmr-bridge:/data:/sbin/nologin' \
      > /rootfs/etc/passwd \
 && printf '%s\n' 'root:x:0:' 'dsmr-bridge:x:1000:' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp \
 && chown 1000:1000 /rootfs/data

###############################################################################
# Per-architecture label (TARGETARCH arm64 is Home Assistant's aarch64).
FROM scratch AS base-amd64
LABEL io.hass.arch="amd64"

FROM scratch AS base-arm64
LABEL io.hass.arch="aarch64"

# A stage name, not a registry image: nothing to tag.
# hadolint ignore=DL3006
FROM base-${TARGETARCH}

ARG BUILD_VERSION

COPY --from=rootfs /rootfs/ /
COPY --from=builder /out/dsmr-bridge /usr/bin/dsmr-bridge

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

LABEL io.hass.type="app" \
      io.hass.version="${BUILD_VERSION}" \
      io.hass.name="DSMR-reader bridge" \
      io.hass.description="Publish DSMR-reader smart meter readings to MQTT with Home Assistant discovery" \
      io.hass.url="https://github.com/dsmr-bridge/dsmr-bridge" \
      org.opencontainers.image.title="dsmr-bridge" \
      org.opencontainers.image.description="Publish DSMR-reader smart meter readings to MQTT with Home Assistant discovery" \
      org.opencontainers.image.version="${BUILD_VERSION}" \
      org.opencontainers.image.url="https://github.com/dsmr-bridge/dsmr-bridge" \
      org.opencontainers.image.source="https://github.com/dsmr-bridge/dsmr-bridge" \
      org.opencontainers.image.documentation="https://github.com/dsmr-bridge/dsmr-bridge/blob/main/DOCS.md" \
      org.opencontainers.image.licenses="MIT"

# No USER line: the Supervisor writes /data/options.json readable by root
# only and config.yaml cannot choose the container user. The binary reads its
# options as root and then switches to the unprivileged user below before it
# opens any connection (src/privileges.rs); the AppArmor profile grants only
# the setuid/setgid capabilities that switch needs. Outside Home Assistant,
# `docker run --user 1000:1000` starts it unprivileged from the beginning.
ENV DSMR_BRIDGE_RUN_AS=1000:1000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/bin/dsmr-bridge", "healthcheck"]

ENTRYPOINT ["/usr/bin/dsmr-bridge"]
