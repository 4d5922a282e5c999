# syntax=docker/dockerfile:1.7
#
# The Sluice controller image: a static `sluice` binary plus the `helm` and `kustomize` binaries it runs
# to render Application sources, on distroless/static, as the non-root user 65532.
#
#   docker build -t <registry>/sluice:$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2) .
#
# Build for another architecture with `docker buildx build --platform linux/arm64 ...`: the tool
# downloads below pick the matching archive and checksum. The base images are pinned by tag; pin them
# by digest too (`FROM image:tag@sha256:...`) in a release pipeline.

ARG RUST_VERSION=1.95
ARG HELM_VERSION=v3.22.0
ARG KUSTOMIZE_VERSION=v5.8.1

# --- The controller: musl target, so the binary is fully static (libgit2, OpenSSL and libssh2 are
# vendored and linked in by the git2 crate's features; ring is the only TLS crypto provider).
FROM rust:${RUST_VERSION}-alpine AS build
RUN apk add --no-cache build-base perl linux-headers
WORKDIR /src
# The workspace manifest names e2e/traffic and the bench, so cargo needs them to read it.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY e2e/traffic ./e2e/traffic
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sluice \
    && cp target/release/sluice /sluice
# distroless/static has no libc: fail here, not at start-up, if anything made the binary dynamic.
RUN ! readelf -l /sluice | grep -q 'program interpreter' \
    && ! readelf -d /sluice | grep -q '(NEEDED)' \
    && /sluice --version

# --- helm and kustomize, pinned, each archive checked against the SHA-256 its project publishes
# (https://get.helm.sh/helm-<version>-linux-<arch>.tar.gz.sha256sum and kustomize's checksums.txt).
# The sums are written here rather than downloaded beside the archive: a sum fetched from the same
# place as the archive proves nothing when that place is compromised.
FROM alpine:3.22 AS tools
ARG TARGETARCH
ARG HELM_VERSION
ARG KUSTOMIZE_VERSION
ARG HELM_SHA256_AMD64=1e4ab49e429626cf6c6958d914248b78c9730803c2751b87627e171dc800e7bb
ARG HELM_SHA256_ARM64=f14e804dfee240f55525b667488fe9adca349e63e00c9af634c0beb1421ac310
ARG KUSTOMIZE_SHA256_AMD64=029a7f0f4e1932c52a0476cf02a0fd855c0bb85694b82c338fc648dcb53a819d
ARG KUSTOMIZE_SHA256_ARM64=0953ea3e476f66d6ddfcd911d750f5167b9365aa9491b2326398e289fef2c142
RUN apk add --no-cache curl tar
WORKDIR /tools
RUN set -eu; \
    arch="${TARGETARCH:-amd64}"; \
    case "$arch" in \
      amd64) helm_sha="$HELM_SHA256_AMD64"; kustomize_sha="$KUSTOMIZE_SHA256_AMD64" ;; \
      arm64) helm_sha="$HELM_SHA256_ARM64"; kustomize_sha="$KUSTOMIZE_SHA256_ARM64" ;; \
      *) echo "no pinned helm/kustomize checksums for $arch" >&2; exit 1 ;; \
    esac; \
    curl -fsSLo helm.tar.gz "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz"; \
    echo "${helm_sha}  helm.tar.gz" | sha256sum -c -; \
    tar -xzf helm.tar.gz --strip-components=1 "linux-${arch}/helm"; \
    curl -fsSLo kustomize.tar.gz \
      "https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2F${KUSTOMIZE_VERSION}/kustomize_${KUSTOMIZE_VERSION}_linux_${arch}.tar.gz"; \
    echo "${kustomize_sha}  kustomize.tar.gz" | sha256sum -c -; \
    tar -xzf kustomize.tar.gz kustomize; \
    chmod 0755 helm kustomize; \
    ./helm version --short; \
    ./kustomize version

# --- Runtime: no shell, no package manager; CA certificates and /etc/passwd for user 65532 (nonroot).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sluice /sluice
COPY --from=tools /tools/helm /tools/kustomize /usr/local/bin/
# The vendored OpenSSL (Git over HTTPS) looks for CA certificates where it was built to; point it at
# the image's bundle. HOME must be writable for helm's caches: the chart mounts an emptyDir at /tmp and
# keeps the root filesystem read-only.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/tmp
USER 65532:65532
EXPOSE 8090 8091
ENTRYPOINT ["/sluice"]
CMD ["controller"]
