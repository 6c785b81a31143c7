# oidc-gateway: a multi-stage build, Rust builder -> Debian slim runtime.
#   docker build -t oidc-gateway .
#   docker run -v $PWD/conf/gateway.toml:/etc/oidc-gateway/gateway.toml oidc-gateway \
#       run --config /etc/oidc-gateway/gateway.toml
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
# `otlp`: the image can export traces (`[telemetry]`).
RUN cargo build --release --locked --features otlp \
    && strip target/release/oidc-gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/oidc-gateway /usr/local/bin/oidc-gateway
COPY conf/docker.toml /etc/oidc-gateway/docker.toml
# Not root, and nothing is written at run time: `docker run --read-only` works.
USER 65534:65534
EXPOSE 8080
# The admin listener of conf/docker.toml; the image has no curl, the binary asks itself.
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/oidc-gateway", "probe", "http://127.0.0.1:9090/readyz"]
ENTRYPOINT ["/usr/local/bin/oidc-gateway"]
CMD ["run", "--config", "/etc/oidc-gateway/docker.toml"]
