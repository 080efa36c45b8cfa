# The Pod sandbox image, from pause.c built statically on the host (no image download).
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
