package executorconfig

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRepository(t *testing.T) {
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"endpoint": "s3.example:8333", "bucket": "b", "secretName": "creds"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		data    map[string]string
		want    Repository
		wantErr string
	}{
		{"defaults", base(nil), Repository{Endpoint: "s3.example:8333", Bucket: "b", Region: "us-east-1", PathStyle: true, SecretName: "creds"}, ""},
		{"http URL means insecure", base(map[string]string{"endpoint": "http://seaweedfs.pnsflow-system:8333/"}),
			Repository{Endpoint: "seaweedfs.pnsflow-system:8333", Bucket: "b", Region: "us-east-1", Insecure: true, PathStyle: true, SecretName: "creds"}, ""},
		{"everything", base(map[string]string{"region": "eu-west-1", "insecure": "true", "pathStyle": "false", "keyPrefix": "/runs/"}),
			Repository{Endpoint: "s3.example:8333", Bucket: "b", Region: "eu-west-1", Insecure: true, KeyPrefix: "runs", SecretName: "creds"}, ""},
		{"missing fields", map[string]string{}, Repository{}, "bucket is required\nendpoint is required\nsecretName is required"},
		{"unknown key", base(map[string]string{"acessKey": "x"}), Repository{}, "unknown keys acessKey"},
		{"bad bool", base(map[string]string{"insecure": "yes please"}), Repository{}, `insecure "yes please": want true or false`},
		{"logs archived by default", base(map[string]string{"archiveLogs": "true"}),
			Repository{Endpoint: "s3.example:8333", Bucket: "b", Region: "us-east-1", PathStyle: true, SecretName: "creds", ArchiveLogs: true}, ""},
		{"bad scheme", base(map[string]string{"endpoint": "ftp://x"}), Repository{}, "scheme must be http or https"},
		{"a path in the endpoint", base(map[string]string{"endpoint": "https://x/y"}), Repository{}, "want host[:port]"},
		{"dot-dot prefix", base(map[string]string{"keyPrefix": "a/../b"}), Repository{}, "must not contain '..'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRepository(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoaderFailureRoundTripsWithinKubeletsLimit(t *testing.T) {
	for name, msg := range map[string]string{
		"short":           "input artifact \"a\": key ns/x/a does not exist",
		"long":            strings.Repeat("é\"<", 5000),
		"exactly escaped": strings.Repeat("\n", 3000),
	} {
		enc := LoaderFailure{Reason: "ArtifactNotFound", Message: msg}.Encode()
		if len(enc) > maxTerminationMessage {
			t.Errorf("%s: encoded to %d bytes, over kubelet's %d", name, len(enc), maxTerminationMessage)
		}
		got, ok := DecodeLoaderFailure(enc)
		if !ok || got.Reason != "ArtifactNotFound" || !strings.HasPrefix(msg, got.Message) || got.Message == "" {
			t.Errorf("%s: decoded %+v, %v; want the reason and a prefix of the message", name, got, ok)
		}
	}
	for _, notOne := range []string{"", "panic: boom", `{"message":"no reason"}`} {
		if _, ok := DecodeLoaderFailure(notOne); ok {
			t.Errorf("DecodeLoaderFailure(%q) took it for a loader's message", notOne)
		}
	}
}
