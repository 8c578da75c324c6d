# capi-cdc: a release binary on a slim Debian, run as a non-root user.
#
#   docker build -t capi-cdc .          builds from source (stage `build`)
#   docker build --build-arg BINARY=prebuilt -t capi-cdc .
#                                       packages target/release/capi-cdc,
#                                       built on the host with the very
#                                       command of stage `build` (below);
#                                       deploy/docker/test.sh does this.
ARG BINARY=build

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
# Compiled in with include_str!: the reference schema and the default rules.
COPY sql ./sql
COPY config ./config
RUN cargo build --release --locked --bin capi-cdc

FROM scratch AS prebuilt
COPY target/release/capi-cdc /src/target/release/capi-cdc

FROM ${BINARY} AS binary

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/capi-cdc --create-home capi
COPY --from=binary /src/target/release/capi-cdc /usr/local/bin/capi-cdc
COPY config/capi-cdc.example.toml /etc/capi-cdc/capi-cdc.example.toml
USER capi
WORKDIR /var/lib/capi-cdc
# The spool (checkpoint, events, ledger) must outlive the container.
VOLUME ["/var/lib/capi-cdc"]
ENV CAPI_CDC_CONFIG=/etc/capi-cdc/capi-cdc.toml \
    CAPI_CDC_SPOOL__PATH=/var/lib/capi-cdc/spool/ \
    CAPI_CDC_ADMIN__LISTEN=0.0.0.0:9187
EXPOSE 9187
# bash (Essential in Debian, unlike curl) can speak HTTP through /dev/tcp.
# The sandbox and storefront services override this with their own.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ok <&3"]
# capi-cdc stops on SIGTERM: it flushes the spool and sends the final
# standby status (docker stop's default signal).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/capi-cdc"]
CMD ["run"]
