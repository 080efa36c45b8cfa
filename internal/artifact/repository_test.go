package artifact

import (
	"fmt"
	"strings"
	"testing"
)

func TestRepositoryURLFollowsInsecure(t *testing.T) {
	if got := (Repository{Endpoint: "h:1", Insecure: true}).URL(); got != "http://h:1" {
		t.Errorf("insecure URL = %q", got)
	}
	if got := (Repository{Endpoint: "h"}).URL(); got != "https://h" {
		t.Errorf("secure URL = %q", got)
	}
}

func TestCredentialsFromEnvNeedsBothVariables(t *testing.T) {
	t.Setenv(AccessKeyEnv, "AKID")
	t.Setenv(SecretKeyEnv, "s3cr3t")
	c, err := CredentialsFromEnv()
	if err != nil || c != (Credentials{AccessKeyID: "AKID", SecretAccessKey: "s3cr3t"}) {
		t.Fatalf("CredentialsFromEnv() = %v, %v", c, err)
	}
	t.Setenv(SecretKeyEnv, "")
	if _, err := CredentialsFromEnv(); err == nil || !strings.Contains(err.Error(), SecretKeyEnv+" not set") {
		t.Errorf("missing secret: error = %v", err)
	}
	t.Setenv(AccessKeyEnv, "")
	if _, err := CredentialsFromEnv(); err == nil || !strings.Contains(err.Error(), AccessKeyEnv+" and "+SecretKeyEnv) {
		t.Errorf("missing both: error = %v", err)
	}
}

func TestCredentialsNeverPrintTheSecret(t *testing.T) {
	r := Repository{Endpoint: "h", Credentials: Credentials{AccessKeyID: "AKID", SecretAccessKey: "s3cr3t"}}
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), fmt.Sprint(r.Credentials)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("secret printed: %s", s)
		}
	}
}
