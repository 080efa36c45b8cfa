# kube-proxy with the iptables and nft tools it runs (in both its iptables and nftables modes) and
# their shared libraries, taken from Debian packages in the node's debootstrap rootfs
# (rootfs.tar, made by hack/kind/node-image.sh). The binary sits where kubeadm's DaemonSet runs it.
FROM scratch
ADD rootfs.tar /
COPY kube-proxy /usr/local/bin/kube-proxy
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
