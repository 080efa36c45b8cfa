# Offline build of the pns-executor image: no base image to pull. `make images` builds the static
# binary on the host (CGO_ENABLED=0) into the context directory first. The Pod builder runs it as
# ["/pns-executor", "run"].
FROM scratch
COPY pns-executor /pns-executor
ENTRYPOINT ["/pns-executor"]
CMD ["run"]
