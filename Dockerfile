# falco-responder: one static binary in an otherwise empty image.
#
#   docker buildx build -t ghcr.io/falco-responder/falco-responder:0.1.0 --push .
#
# Needs BuildKit (default in Docker 23+; also buildah/podman) for the RUN cache mounts.
#
# The same image is deployed on Knative, OpenFaaS and as an Argo Events / Argo Workflows
# target (see docs/deploy-*.md); deploy it by digest (IMAGE@sha256:...).
#
# scripts/image.sh assembles the identical final stage offline with buildah from a locally
# built musl binary: it takes every line from "FROM scratch" to the end of this file and
# only rewrites the `COPY --from=builder` source. Keep the final stage self-contained.

ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS builder
# musl-gcc: ring (rustls' crypto) compiles C code for the musl target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
# buildx sets TARGETARCH (amd64 | arm64); a plain `docker build` builds for the host.
ARG TARGETARCH
RUN case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit and buildah honour
# them); the binary is copied out of the cached target/ so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$(cat /rust-target)" --bin falco-responder \
    && mkdir -p /out \
    && cp "target/$(cat /rust-target)/release/falco-responder" /out/falco-responder

# ---- final stage (shared with scripts/image.sh) -----------------------------------------
# No shell, no libc, no CA bundle: the binary is static, talks only to the in-cluster API
# server (whose CA comes from the mounted ServiceAccount), and writes nothing at run time,
# so readOnlyRootFilesystem works. Numeric user so that runAsNonRoot can be verified.
FROM scratch
COPY --from=builder /out/falco-responder /falco-responder
LABEL org.opencontainers.image.title="falco-responder" \
      org.opencontainers.image.description="Receives Falco events and deletes the offending Kubernetes pod" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/falco-responder"]
