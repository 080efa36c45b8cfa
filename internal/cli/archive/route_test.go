package archive

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestSplitEndpointDefaultsThePortToTheSchemes(t *testing.T) {
	for _, c := range []struct {
		endpoint string
		insecure bool
		host     string
		port     int32
		bad      bool
	}{
		{"seaweedfs.pnsflow-system.svc:8333", true, "seaweedfs.pnsflow-system.svc", 8333, false},
		{"s3.example.org", false, "s3.example.org", 443, false},
		{"10.96.0.12", true, "10.96.0.12", 80, false},
		{"[fd00::12]:9000", false, "fd00::12", 9000, false},
		{"minio:0", true, "", 0, true},
		{"minio:http", true, "", 0, true},
	} {
		host, port, err := SplitEndpoint(c.endpoint, c.insecure)
		if (err != nil) != c.bad || host != c.host || port != c.port {
			t.Errorf("SplitEndpoint(%q, %v) = %q, %d, %v; want %q, %d, error %v", c.endpoint, c.insecure, host, port, err, c.host, c.port, c.bad)
		}
	}
}

func TestServiceByNameTakesOnlyClusterServiceNames(t *testing.T) {
	for host, want := range map[string]*types.NamespacedName{
		"seaweedfs.pnsflow-system.svc":               {Namespace: "pnsflow-system", Name: "seaweedfs"},
		"minio.store.svc.cluster.local":              {Namespace: "store", Name: "minio"},
		"minio.store.svc.cluster.local.":             {Namespace: "store", Name: "minio"},
		"s3.eu-west-1.amazonaws.com":                 nil,
		"minio.store":                                nil, // resolvable in a Pod, ambiguous outside
		"svc.cluster.local":                          nil,
		"bucket.s3.svc.example.org.s3.amazonaws.com": nil,
		"10.96.0.12":                                 nil,
		"..svc":                                      nil,
	} {
		got, ok := ServiceByName(host)
		switch {
		case want == nil && ok:
			t.Errorf("ServiceByName(%q) = %s, want none", host, got)
		case want != nil && (!ok || got != *want):
			t.Errorf("ServiceByName(%q) = %s, %v; want %s", host, got, ok, *want)
		}
	}
}

func TestServiceByIPMatchesEveryClusterIPButNone(t *testing.T) {
	svc := func(ns, name string, ips ...string) corev1.Service {
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		s.Spec.ClusterIP, s.Spec.ClusterIPs = ips[0], ips
		return s
	}
	services := []corev1.Service{
		svc("default", "kubernetes", "10.96.0.1"),
		svc("store", "headless", corev1.ClusterIPNone),
		svc("pnsflow-system", "seaweedfs", "10.96.0.12", "fd00::12"),
	}
	for ip, want := range map[string]string{"10.96.0.12": "pnsflow-system/seaweedfs", "fd00::12": "pnsflow-system/seaweedfs", "10.96.0.1": "default/kubernetes", "10.96.0.99": "", corev1.ClusterIPNone: ""} {
		got, ok := ServiceByIP(ip, services)
		if (want == "") == ok || (ok && got.String() != want) {
			t.Errorf("ServiceByIP(%q) = %s, %v; want %q", ip, got, ok, want)
		}
	}
}

func TestBackendForPicksAReadyPodAndItsPortForTheServicePort(t *testing.T) {
	yes, no := true, false
	name := func(s string) *string { return &s }
	port := func(n int32) *int32 { return &n }
	pod := func(n string) *corev1.ObjectReference { return &corev1.ObjectReference{Kind: "Pod", Name: n} }
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "store", Name: "s3"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "admin", Port: 9001, TargetPort: intstr.FromInt32(19001)},
		{Name: "s3", Port: 8333, TargetPort: intstr.FromString("s3")},
	}}}
	slice := func(eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{{Name: name("admin"), Port: port(19001)}, {Name: name("s3"), Port: port(18333)}}, Endpoints: eps}
	}
	for _, c := range []struct {
		name   string
		port   int32
		slices []discoveryv1.EndpointSlice
		want   Backend
		bad    bool
	}{
		{"the ready pod, its named port", 8333, []discoveryv1.EndpointSlice{slice(
			discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &no}, TargetRef: pod("starting")},
			discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &yes}, TargetRef: pod("weed-0")},
		)}, Backend{Pod: types.NamespacedName{Namespace: "store", Name: "weed-0"}, Port: 18333}, false},
		{"the other port", 9001, []discoveryv1.EndpointSlice{slice(discoveryv1.Endpoint{TargetRef: pod("weed-0")})},
			Backend{Pod: types.NamespacedName{Namespace: "store", Name: "weed-0"}, Port: 19001}, false},
		{"a port the service lacks", 80, []discoveryv1.EndpointSlice{slice(discoveryv1.Endpoint{TargetRef: pod("weed-0")})}, Backend{}, true},
		{"no ready pod", 8333, []discoveryv1.EndpointSlice{slice(discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &no}, TargetRef: pod("weed-0")})}, Backend{}, true},
		{"an endpoint that is no pod", 8333, []discoveryv1.EndpointSlice{slice(discoveryv1.Endpoint{Addresses: []string{"192.0.2.1"}})}, Backend{}, true},
		{"no endpoints", 8333, nil, Backend{}, true},
	} {
		got, err := BackendFor(svc, c.port, c.slices)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("%s: BackendFor = %+v, %v; want %+v, error %v", c.name, got, err, c.want, c.bad)
		}
	}
}
