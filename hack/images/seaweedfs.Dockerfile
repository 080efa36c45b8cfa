# SeaweedFS's `weed`, built from Go modules by hack/seaweedfs.sh (static, no base image needed):
# the S3 server make quickstart deploys as the default artifact repository.
FROM scratch
COPY weed /weed
ENTRYPOINT ["/weed"]
