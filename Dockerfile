# hookrelay: multi-stage build, small non-root runtime image.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
RUN cargo build --release --locked && strip target/release/hookrelay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app hookrelay \
 && mkdir -p /app/data && chown hookrelay /app/data
WORKDIR /app
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
COPY relay.yaml ./relay.yaml
COPY templates ./templates
USER hookrelay
# The SQLite database (sqlite://data/hookrelay.db) lives here.
VOLUME ["/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["hookrelay"]
CMD ["serve", "-c", "/app/relay.yaml"]
