# The csvbus services and CLI in one image: csvbus-upload, csvbus-sink, csvbus.
# Build: docker build -t csvbus .   (compose.yaml builds it for you)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys (make, a C compiler, perl are in the image).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin csvbus-upload --bin csvbus-sink --bin csvbus \
 && mkdir -p /out \
 && cp target/release/csvbus-upload target/release/csvbus-sink target/release/csvbus /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 csvbus
COPY --from=build /out/ /usr/local/bin/
USER csvbus
EXPOSE 8080 8081
CMD ["csvbus-upload"]
