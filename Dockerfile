# syntax=docker/dockerfile:1
# novaload: one image, two commands — `novaload run ...` (the load generator) and
# `novaload target ...` (the NovaCron-compatible reference server). compose/ builds it.

FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx: never contact a database at build time (offline query data, if any, is in .sqlx/).
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin novaload \
    && install -m 0755 target/release/novaload /usr/local/bin/novaload

FROM debian:bookworm-slim AS runtime
# ca-certificates tracks Debian's security updates: pinning its version would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 novaload \
    && useradd --system --uid 10001 --gid novaload --home-dir /var/lib/novaload --create-home novaload \
    && mkdir -p /var/lib/novaload/results \
    && chown -R novaload:novaload /var/lib/novaload
COPY --from=builder /usr/local/bin/novaload /usr/local/bin/novaload
USER 10001:10001
# results/<timestamp>/ is written under the working directory; compose mounts a volume there.
WORKDIR /var/lib/novaload
EXPOSE 8080 9464
ENTRYPOINT ["novaload"]
CMD ["--help"]
