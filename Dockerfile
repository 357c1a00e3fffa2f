# syntax=docker/dockerfile:1
# Multi-stage build: a static tickflow binary on a minimal, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tickflow . \
 && mkdir -p /out/state/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tickflow /usr/local/bin/tickflow
COPY config.yaml /etc/tickflow/config.yaml
# Relative paths in the config (./data/kafka, ./data/risk, ...) resolve here:
# a volume owned by the image's non-root user.
COPY --from=build --chown=65532:65532 /out/state /var/lib/tickflow
WORKDIR /var/lib/tickflow
VOLUME ["/var/lib/tickflow"]
# Listen on all interfaces inside the container; publish ports to choose
# who can reach them.
ENV TICKFLOW_API_LISTEN=0.0.0.0:8080 \
    TICKFLOW_PUSH_LISTEN=0.0.0.0:8081
USER nonroot:nonroot
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/tickflow", "-config", "/etc/tickflow/config.yaml"]
