package runspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseEnvAcceptsDockerStyleValues(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		local   map[string]string
		want    []corev1.EnvVar
		wantErr string
	}{
		{name: "K=V sets V", in: []string{"A=1"}, want: []corev1.EnvVar{{Name: "A", Value: "1"}}},
		{name: "the value keeps later '='", in: []string{"URL=a=b=c"}, want: []corev1.EnvVar{{Name: "URL", Value: "a=b=c"}}},
		{name: "an empty value is allowed", in: []string{"EMPTY="}, want: []corev1.EnvVar{{Name: "EMPTY", Value: ""}}},
		{name: "bare K passes the local value on", in: []string{"HOME"}, local: map[string]string{"HOME": "/root"}, want: []corev1.EnvVar{{Name: "HOME", Value: "/root"}}},
		{name: "bare K unset locally is an error", in: []string{"NOPE"}, wantErr: "not set in your environment"},
		{name: "a later value of the same name wins", in: []string{"A=1", "B=2", "A=3"}, want: []corev1.EnvVar{{Name: "A", Value: "3"}, {Name: "B", Value: "2"}}},
		{name: "an invalid name is refused", in: []string{"1A=x"}, wantErr: "not a valid variable name"},
		{name: "an empty name is refused", in: []string{"=x"}, wantErr: "not a valid variable name"},
		{name: "pnsflow's own variables are refused", in: []string{"PNSFLOW_OUTPUTS=/x"}, wantErr: "set by pnsflow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnv(tc.in, lookupFrom(tc.local))
			checkErr(t, err, tc.wantErr)
			if diff := cmp.Diff(tc.want, got); tc.wantErr == "" && diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseOutputsNeedsNameAndAbsolutePath(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		want    []v1alpha1.OutputParameter
		wantErr string
	}{
		{name: "PARAM=PATH declares a parameter", in: []string{"greeting=/pnsflow/outputs/greeting"},
			want: []v1alpha1.OutputParameter{{Name: "greeting", ValueFrom: v1alpha1.OutputValueFrom{Path: "/pnsflow/outputs/greeting"}}}},
		{name: "a missing '=' is refused", in: []string{"greeting"}, wantErr: "want PARAM=PATH"},
		{name: "an empty path is refused", in: []string{"greeting="}, wantErr: "want PARAM=PATH"},
		{name: "a relative path is refused", in: []string{"x=out/x"}, wantErr: "must be absolute"},
		{name: "an upper-case name is refused", in: []string{"Greeting=/x"}, wantErr: "not a valid parameter name"},
		{name: "a name given twice is refused", in: []string{"x=/a", "x=/b"}, wantErr: "given twice"},
		{name: "more than the API's 32 are refused", in: make([]string, 33), wantErr: "at most 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOutputs(tc.in)
			checkErr(t, err, tc.wantErr)
			if diff := cmp.Diff(tc.want, got); tc.wantErr == "" && diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseUserSetsUIDAndGID(t *testing.T) {
	uid, gid := int64(1000), int64(2000)
	cases := []struct {
		in      string
		want    *corev1.SecurityContext
		wantErr string
	}{
		{"", nil, ""},
		{"1000", &corev1.SecurityContext{RunAsUser: &uid}, ""},
		{"1000:2000", &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &gid}, ""},
		{"root", nil, "numeric UID"},
		{"1000:", nil, "numeric UID"},
		{"-1", nil, "numeric UID"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseUser(tc.in)
			checkErr(t, err, tc.wantErr)
			if diff := cmp.Diff(tc.want, got); tc.wantErr == "" && diff != "" {
				t.Errorf("securityContext (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeadlineSecondsRoundsUp(t *testing.T) {
	cases := []struct {
		in      time.Duration
		want    int64
		none    bool
		wantErr string
	}{
		{in: 0, none: true},
		{in: 90 * time.Second, want: 90},
		{in: 1500 * time.Millisecond, want: 2},
		{in: time.Millisecond, want: 1},
		{in: -time.Second, wantErr: "must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.in.String(), func(t *testing.T) {
			got, err := DeadlineSeconds(tc.in)
			checkErr(t, err, tc.wantErr)
			switch {
			case tc.wantErr != "":
			case tc.none && got != nil:
				t.Errorf("got %d, want no deadline", *got)
			case !tc.none && (got == nil || *got != tc.want):
				t.Errorf("got %v, want %d", got, tc.want)
			}
		})
	}
}

func TestReadStdinRefusesInputOverTheCap(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		limit   int
		want    string
		tooBig  bool
		wantErr string
	}{
		{name: "input at the cap is kept", in: "abcd", limit: 4, want: "abcd"},
		{name: "one byte over the cap is refused", in: "abcde", limit: 4, tooBig: true, wantErr: "at most 4"},
		{name: "empty input is empty stdin", in: "", limit: 4, want: ""},
		{name: "binary input is refused", in: "\xff\xfe", limit: 4, wantErr: "not UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadStdin(strings.NewReader(tc.in), tc.limit)
			checkErr(t, err, tc.wantErr)
			if errors.Is(err, ErrStdinTooLarge) != tc.tooBig {
				t.Errorf("ErrStdinTooLarge = %v, want %v", errors.Is(err, ErrStdinTooLarge), tc.tooBig)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBuildMakesTheStepRunTheFlagsDescribe(t *testing.T) {
	stdin := "hello\n"
	uid := int64(1000)
	deadline := int64(30)
	cases := []struct {
		name    string
		opts    Options
		want    v1alpha1.StepRunSpec
		wantErr string
	}{
		{name: "the command after -- replaces the entrypoint",
			opts: Options{Name: "hi", Image: "busybox", Command: []string{"sh", "-c", "echo hi"}},
			want: v1alpha1.StepRunSpec{Image: "busybox", Command: []string{"sh"}, Args: []string{"-c", "echo hi"}}},
		{name: "--keep-entrypoint passes it as args",
			opts: Options{Name: "hi", Image: "busybox", Command: []string{"--verbose"}, KeepEntrypoint: true},
			want: v1alpha1.StepRunSpec{Image: "busybox", Args: []string{"--verbose"}}},
		{name: "no command runs the image as built",
			opts: Options{Name: "hi", Image: "busybox"},
			want: v1alpha1.StepRunSpec{Image: "busybox"}},
		{name: "every flag lands in the spec",
			opts: Options{Name: "hi", Image: "busybox", Command: []string{"cat"}, Env: []string{"A=1"}, Outputs: []string{"x=/tmp/x"},
				User: "1000", Timeout: 30 * time.Second, Stdin: &stdin},
			want: v1alpha1.StepRunSpec{Image: "busybox", Command: []string{"cat"}, Env: []corev1.EnvVar{{Name: "A", Value: "1"}},
				Outputs:         &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{{Name: "x", ValueFrom: v1alpha1.OutputValueFrom{Path: "/tmp/x"}}}},
				SecurityContext: &corev1.SecurityContext{RunAsUser: &uid}, ActiveDeadlineSeconds: &deadline, Stdin: &stdin}},
		{name: "no image is refused", opts: Options{Name: "hi"}, wantErr: "--image is required"},
		{name: "no name is refused", opts: Options{Image: "busybox"}, wantErr: "a name is required"},
		{name: "an invalid name is refused", opts: Options{Name: "Hi_there", Image: "busybox"}, wantErr: "not valid"},
		{name: "a name over 249 characters is refused", opts: Options{Name: strings.Repeat("a", 250), Image: "busybox"}, wantErr: "at most 249"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Build(tc.opts)
			checkErr(t, err, tc.wantErr)
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, got.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			if got.Name != tc.opts.Name {
				t.Errorf("name = %q", got.Name)
			}
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("want an error containing %q, got none", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
