# capi-cdc: build a static-enough release binary, run it on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin capi-cdc

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/capi-cdc --create-home capi
COPY --from=build /src/target/release/capi-cdc /usr/local/bin/capi-cdc
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
HEALTHCHECK --interval=15s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ok <&3"]
ENTRYPOINT ["/usr/local/bin/capi-cdc"]
CMD ["run"]
