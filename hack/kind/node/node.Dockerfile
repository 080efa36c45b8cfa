# The last step of the local kind node image: `docker import` cannot set STOPSIGNAL, and systemd
# (the node's PID 1) exits on SIGRTMIN+3, not SIGTERM (which makes it re-execute itself).
ARG BASE
FROM ${BASE}
STOPSIGNAL SIGRTMIN+3
