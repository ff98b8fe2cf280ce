# Baton as a container: the release binary on a slim Debian. It needs no PostgreSQL binaries
# when DATABASE_URL is set (as in docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# The dashboard's files are embedded in the binary at build time.
COPY dashboard ./dashboard
# Cargo.toml names the benchmark targets, so their sources must be present to build.
COPY benches ./benches
RUN cargo build --release --locked --bin baton

FROM debian:bookworm-slim
COPY --from=build /src/target/release/baton /usr/local/bin/baton
# The API on 8080; the admin listener (Prometheus /metrics, /healthz, /readyz, no tokens) on
# 9464, on every interface of the container so that a scraper on the container network reaches
# it: publish it to no one else.
ENV BATON_ADDR=0.0.0.0:8080 \
    BATON_ADMIN_ADDR=0.0.0.0:9464
EXPOSE 8080 9464
# `baton healthcheck` asks the admin listener's /readyz (its address from BATON_ADMIN_ADDR, on
# loopback) and opens no database. With BATON_ADMIN_ADDR=off, override it with
# `baton healthcheck --addr 127.0.0.1:8080`.
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 \
    CMD ["baton", "healthcheck"]
USER nobody
ENTRYPOINT ["baton"]
CMD ["serve"]
