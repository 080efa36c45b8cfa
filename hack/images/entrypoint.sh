#!/bin/sh
# The entrypoint of localhost/pnsflow-entrypoint:test (see entrypoint.Dockerfile).
echo "entrypoint ran with args: $*"
printf ran >/tmp/entrypoint
if [ -n "${PNSFLOW_OUTPUTS:-}" ]; then printf ran >"${PNSFLOW_OUTPUTS}/entrypoint"; fi
