# Baton as a container: the release binary on a slim Debian. It needs no PostgreSQL binaries
# when DATABASE_URL is set (as in docker-compose.yml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# Cargo.toml names the benchmark targets, so their sources must be present to build.
COPY benches ./benches
RUN cargo build --release --locked --bin baton

FROM debian:bookworm-slim
COPY --from=build /src/target/release/baton /usr/local/bin/baton
ENV BATON_ADDR=0.0.0.0:8080
EXPOSE 8080
USER nobody
ENTRYPOINT ["baton"]
CMD ["serve"]
