# The project's images, built the usual (online) way: a Go builder stage, then static binaries on
# an empty base.
#   docker build --target manager      -t pnsflow/manager:dev .
#   docker build --target pns-executor -t pnsflow/pns-executor:dev .
# Without a registry (no golang image to pull), `make images` builds the same binaries on the host
# and packs them with hack/images/*.Dockerfile instead.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS builder
WORKDIR /src
ENV CGO_ENABLED=0
# Dependencies first, so they stay cached while the sources change.
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
RUN go build -trimpath -ldflags "-s -w" -o /out/manager ./cmd/manager \
 && go build -trimpath -ldflags "-s -w" -o /out/pns-executor ./cmd/pns-executor

# The sidecar the manager puts in every step Pod; the Pod builder sets its user and command.
FROM scratch AS pns-executor
COPY --from=builder /out/pns-executor /pns-executor
ENTRYPOINT ["/pns-executor"]
CMD ["run"]

# The operator (last, so a plain `docker build .` builds it).
FROM scratch AS manager
COPY --from=builder /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
