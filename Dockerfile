# netdevice-plugin image: the daemon and the hook, both static, and pci.ids from Debian so vendor and
# device names never need a network fetch at run time.
# The final stage's files, user and entrypoint are deploy/image-layout.json's: the end-to-end test
# builds the same image from that file without Docker, and test/e2e/pluginimage fails when this
# Dockerfile and the file disagree. Change both together.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/netdevice-plugin ./cmd/netdevice-hook

FROM debian:bookworm-slim AS pciids
RUN apt-get update && apt-get install -y --no-install-recommends pci.ids && rm -rf /var/lib/apt/lists/*

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=pciids /usr/share/misc/pci.ids /usr/share/misc/pci.ids
COPY --from=build /out/netdevice-plugin /out/netdevice-hook /usr/local/bin/
# The daemon needs root and CAP_NET_ADMIN on the host; the DaemonSet runs it privileged.
USER 0:0
ENTRYPOINT ["/usr/local/bin/netdevice-plugin"]
