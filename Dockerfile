# syntax=docker/dockerfile:1
# Multi-stage build: a static tickflow binary on a minimal, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tickflow .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tickflow /usr/local/bin/tickflow
COPY config.yaml /etc/tickflow/config.yaml
# The embedded broker (when no external brokers are configured) persists here.
VOLUME ["/var/lib/tickflow"]
ENV TICKFLOW_BUS_DATA_DIR=/var/lib/tickflow/kafka
USER nonroot:nonroot
EXPOSE 8080 8081 9092
ENTRYPOINT ["/usr/local/bin/tickflow", "-config", "/etc/tickflow/config.yaml"]
