# Offline build of the manager image: no base image to pull. `make images` builds the static
# binary on the host (CGO_ENABLED=0) into the context directory first.
FROM scratch
COPY manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
