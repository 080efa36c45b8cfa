# A test image whose USER is a numeric non-root UID and GID, for StepRuns with no securityContext:
# main's IDs are then unknown to the Pod builder, and the executor takes them once main runs. (The
# kubelet passes the runtime the UID alone, so main runs as 1000:0 on containerd.)
ARG BASE=localhost/pnsflow-busybox:test
FROM ${BASE}
USER 1000:1000
