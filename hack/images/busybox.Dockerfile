# A busybox image for tests and the samples, from Debian's busybox-static (no registry needed):
# /bin/busybox with every applet linked to it in /bin, like the busybox image. `make images` tags
# it localhost/pnsflow-busybox:test and busybox:1.36 (the name config/samples uses).
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
