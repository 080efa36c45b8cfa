package archive

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// SplitEndpoint is a repository endpoint's host and port; the port defaults to the scheme's.
func SplitEndpoint(endpoint string, insecure bool) (host string, port int32, err error) {
	port = 443
	if insecure {
		port = 80
	}
	h, p, err := net.SplitHostPort(endpoint)
	if err != nil {
		// No port: the whole endpoint is the host (an IPv6 literal keeps its brackets off).
		return strings.TrimSuffix(strings.TrimPrefix(endpoint, "["), "]"), port, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("endpoint %q: bad port %q", endpoint, p)
	}
	return h, int32(n), nil
}

// ServiceByName is the Service a cluster DNS name points at: name.namespace.svc, or that with
// the default cluster domain (cluster.local) after it. Other names (a bucket on the internet, a
// node's address) are not the cluster's to forward; name.namespace alone resolves in a Pod but
// could be anything outside.
func ServiceByName(host string) (types.NamespacedName, bool) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	inCluster := len(parts) == 3 || (len(parts) == 5 && parts[3] == "cluster" && parts[4] == "local")
	if !inCluster || parts[2] != "svc" || parts[0] == "" || parts[1] == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: parts[1], Name: parts[0]}, true
}

// ServiceByIP is the Service among services whose cluster IP is ip.
func ServiceByIP(ip string, services []corev1.Service) (types.NamespacedName, bool) {
	for i := range services {
		s := &services[i]
		for _, cip := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
			if cip != "" && cip != corev1.ClusterIPNone && cip == ip {
				return types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, true
			}
		}
	}
	return types.NamespacedName{}, false
}

// Backend is a Pod behind a Service and the port it serves the Service's port on.
type Backend struct {
	Pod  types.NamespacedName
	Port int32
}

// BackendFor picks a ready Pod serving svc's port from its EndpointSlices, and the Pod's port
// for it (a named target port is resolved by the slices, not here).
func BackendFor(svc *corev1.Service, port int32, slices []discoveryv1.EndpointSlice) (Backend, error) {
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return Backend{}, fmt.Errorf("service %s/%s has no port %d", svc.Namespace, svc.Name, port)
	}
	for _, sl := range slices {
		target, ok := slicePort(sl, sp)
		if !ok {
			continue
		}
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if ready && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				ns := ep.TargetRef.Namespace
				if ns == "" {
					ns = svc.Namespace
				}
				return Backend{Pod: types.NamespacedName{Namespace: ns, Name: ep.TargetRef.Name}, Port: target}, nil
			}
		}
	}
	return Backend{}, fmt.Errorf("service %s/%s has no ready Pod behind port %d", svc.Namespace, svc.Name, port)
}

// slicePort is the port sl's endpoints serve sp on: the slice's port of the same name.
func slicePort(sl discoveryv1.EndpointSlice, sp *corev1.ServicePort) (int32, bool) {
	for _, p := range sl.Ports {
		if p.Port != nil && ptr.Deref(p.Name, "") == sp.Name {
			return *p.Port, true
		}
	}
	// A slice without ports: the target port, when it is a number.
	if len(sl.Ports) == 0 && sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0 {
		return sp.TargetPort.IntVal, true
	}
	return 0, false
}
