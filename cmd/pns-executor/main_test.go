package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "no command", wantCode: exitUsage, wantErr: "usage"},
		{name: "unknown command", args: []string{"jump"}, wantCode: exitUsage, wantErr: "unknown command"},
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantOut: "dev"},
		{name: "bad flag", args: []string{"run", "--nope"}, wantCode: exitUsage},
		{name: "run without config", args: []string{"run"}, env: map[string]string{"PNSFLOW_EXECUTOR_CONFIG": ""},
			wantCode: exitFailed, wantErr: "Reading the executor config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			if code := run(tt.args, &out, &errOut); code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr: %s", code, tt.wantCode, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("stdout %q, stderr %q; want %q, %q", out.String(), errOut.String(), tt.wantOut, tt.wantErr)
			}
		})
	}
}
