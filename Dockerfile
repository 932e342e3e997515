# One image per connector, from one Dockerfile:
#   docker build --build-arg CONNECTOR=source-generator -t hstreamdb/source-generator .
# HServer then runs it exactly like the Java images:
#   IMAGE spec | IMAGE check --config /data/config.json | IMAGE run --config /data/config.json
# (logs go to /data/app.log and stderr; stdout carries only the channel protocol).
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hstream-io

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hstream-io /usr/local/bin/hstream-io
ARG CONNECTOR
RUN test -n "$CONNECTOR" || (echo "build with --build-arg CONNECTOR=<name>; see 'hstream-io connectors'" && false)
ENV CONNECTOR=${CONNECTOR}
# `sh -c '…' --` passes the image arguments through as "$@".
ENTRYPOINT ["/bin/sh", "-c", "exec /usr/local/bin/hstream-io \"$CONNECTOR\" \"$@\"", "--"]
