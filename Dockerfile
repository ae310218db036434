# hookrelay: multi-stage build, small non-root runtime image.
#
#   docker build -t hookrelay .                     # builds the binary in a Rust stage
#   cargo build --release --locked \
#     && docker build --target prebuilt -t hookrelay .   # copies target/release/hookrelay
#
# The `prebuilt` target skips the Rust stage (no rust image, no crates download); it
# is what docker/check.sh builds. Both end in the same runtime stage. The classic
# builder (DOCKER_BUILDKIT=0) builds every stage before its target, so without
# `--target prebuilt` it needs BuildKit (the default builder) or a built binary.
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm

# Everything the binary needs at run time, shared by both targets.
FROM ${DEBIAN_IMAGE} AS runtime-base
# ca-certificates: HTTPS and SMTP TLS to destinations; curl: the HEALTHCHECK.
# A fixed numeric uid/gid, so orchestrators can verify "non-root" and bind mounts can
# be chowned to it (chown 10001 DIR).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 hookrelay \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app \
      --shell /usr/sbin/nologin hookrelay \
 && mkdir -p /app/data && chown 10001:10001 /app/data
WORKDIR /app
# Root-owned and read-only to the service: only /app/data is writable.
COPY relay.yaml ./relay.yaml
COPY templates ./templates
USER 10001:10001
# The SQLite database (storage.url sqlite://data/hookrelay.db) lives here. A named
# volume takes the directory's ownership from the image on first use.
VOLUME ["/app/data"]
EXPOSE 8080
# The port follows HOOKRELAY__SERVER__LISTEN when it is set (e.g. 127.0.0.1:9000);
# a listen address changed in a mounted relay.yaml needs its own --health-cmd.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD listen="${HOOKRELAY__SERVER__LISTEN:-0.0.0.0:8080}"; \
      curl -fsS -o /dev/null -w '/readyz %{http_code}' \
        "http://127.0.0.1:${listen##*:}/readyz" || exit 1
ENTRYPOINT ["hookrelay"]
CMD ["serve", "-c", "/app/relay.yaml"]

# A binary built outside Docker (cargo build --release --locked, on bookworm or with
# an older glibc): .dockerignore lets only target/release/hookrelay into the context.
FROM runtime-base AS prebuilt
COPY target/release/hookrelay /usr/local/bin/hookrelay

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# How the bundled SQLite is compiled (see .cargo/config.toml).
COPY .cargo ./.cargo
COPY src ./src
COPY templates ./templates
RUN cargo build --release --locked && strip target/release/hookrelay

# The default target.
FROM runtime-base AS runtime
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
