# A test image whose ENTRYPOINT does the work, for a StepRun that sets no command (the PNS executor
# leaves main's command untouched). It prints a line naming its arguments and writes the file
# "entrypoint" (content: ran) into $PNSFLOW_OUTPUTS when that is set, and into /tmp.
ARG BASE=localhost/pnsflow-busybox:test
FROM ${BASE}
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
ENTRYPOINT ["/bin/sh", "/usr/local/bin/entrypoint.sh"]
CMD ["default-arg"]
