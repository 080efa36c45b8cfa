# A Kubernetes control-plane image (kube-apiserver, kube-controller-manager, kube-scheduler, etcd)
# made of one static binary, FROM scratch, so building it pulls nothing. kubeadm's static Pod
# manifests run the binary by name (`command: [kube-apiserver, ...]`), hence the PATH.
#   docker build -f hack/kind/node/component.Dockerfile --build-arg BINARY=etcd -t localhost/etcd:TAG CONTEXT
# (CONTEXT holds the binary).
FROM scratch
ARG BINARY
COPY ${BINARY} /usr/local/bin/${BINARY}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
