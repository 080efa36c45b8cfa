package manager_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// reviewed is everything each shipped role may do, one grant per entry: "verb resource" with the
// API group before the resource when it is not the core group, and ":name" after it for a rule
// limited by resourceNames. Changing a list widens or narrows what pnsflow may do in every
// cluster it is installed in: a reviewed decision, with its reason in docs/architecture.md
// ("Security model") and beside the marker or rule that grants it.
var reviewed = map[string][]string{
	// Generated from the +kubebuilder:rbac markers in internal/controller.
	"role.yaml": {
		"create pods",
		"delete pods",
		"get pods",
		"list pods",
		"watch pods",
		"create serviceaccounts",
		"get configmaps",
		"create authorization.k8s.io/subjectaccessreviews",
		"create events.k8s.io/events",
		"patch events.k8s.io/events",
		"bind rbac.authorization.k8s.io/clusterroles:pnsflow-executor",
		"create rbac.authorization.k8s.io/rolebindings",
		"create workflows.pnsflow.dev/stepruns",
		"get workflows.pnsflow.dev/stepruns",
		"list workflows.pnsflow.dev/stepruns",
		"watch workflows.pnsflow.dev/stepruns",
		"update workflows.pnsflow.dev/stepruns/finalizers",
		"patch workflows.pnsflow.dev/stepruns/status",
		"delete workflows.pnsflow.dev/workflowruns",
		"list workflows.pnsflow.dev/workflowruns",
		"watch workflows.pnsflow.dev/workflowruns",
		"update workflows.pnsflow.dev/workflowruns/finalizers",
		"patch workflows.pnsflow.dev/workflowruns/status",
	},
	"leader_election_role.yaml": {
		"get coordination.k8s.io/leases",
		"create coordination.k8s.io/leases",
		"update coordination.k8s.io/leases",
		"create events",
		"patch events",
	},
	// The metrics endpoint's authentication and authorization of its callers.
	"metrics_auth_role.yaml": {
		"create authentication.k8s.io/tokenreviews",
		"create authorization.k8s.io/subjectaccessreviews",
	},
	"executor_role.yaml": {
		"get workflows.pnsflow.dev/stepruns",
		"patch workflows.pnsflow.dev/stepruns/status",
		"get pods",
		"watch pods",
		"get pods/log",
		"get pods/attach",
		"create pods/attach",
	},
}

func TestShippedRolesGrantExactlyTheReviewedRules(t *testing.T) {
	roles := map[string]struct{ kind, name string }{
		"role.yaml":                 {"ClusterRole", "pnsflow-manager"},
		"leader_election_role.yaml": {"Role", "pnsflow-leader-election"},
		"executor_role.yaml":        {"ClusterRole", "pnsflow-executor"},
		"metrics_auth_role.yaml":    {"ClusterRole", "pnsflow-metrics-auth"},
	}
	for file, want := range roles {
		t.Run(file, func(t *testing.T) {
			kind, name, rules, err := readRole(filepath.Join("..", "..", "config", "rbac", file))
			if err != nil {
				t.Fatal(err)
			}
			if kind != want.kind || name != want.name {
				t.Fatalf("%s holds %s %q, want %s %q", file, kind, name, want.kind, want.name)
			}
			granted, err := grants(rules)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			expected := slices.Sorted(slices.Values(reviewed[file]))
			if extra := missingFrom(expected, granted); len(extra) > 0 {
				t.Errorf("%s grants more than was reviewed:\n  %s\nDrop the rule, or add it to the reviewed list with its reason in docs/architecture.md.",
					file, strings.Join(extra, "\n  "))
			}
			if stale := missingFrom(granted, expected); len(stale) > 0 {
				t.Errorf("%s no longer grants:\n  %s\nRemove them from the reviewed list and from docs/architecture.md.",
					file, strings.Join(stale, "\n  "))
			}
		})
	}
}

// The metrics reader is for whatever scrapes the manager, never bound by pnsflow itself: it may
// read /metrics and nothing else.
func TestTheMetricsReaderRoleReadsOnlyMetrics(t *testing.T) {
	kind, name, rules, err := readRole(filepath.Join("..", "..", "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if kind != "ClusterRole" || name != "pnsflow-metrics-reader" || !reflect.DeepEqual(rules, want) {
		t.Errorf("metrics_reader_role.yaml: %s %q with rules %+v, want ClusterRole pnsflow-metrics-reader with %+v", kind, name, rules, want)
	}
}

func TestGrantsRefusesWildcardsAndNonResourceURLs(t *testing.T) {
	for name, rule := range map[string]rbacv1.PolicyRule{
		"wildcard verb":     {APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"*"}},
		"wildcard resource": {APIGroups: []string{""}, Resources: []string{"*"}, Verbs: []string{"get"}},
		"wildcard group":    {APIGroups: []string{"*"}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		"non-resource URL":  {NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
	} {
		if _, err := grants([]rbacv1.PolicyRule{rule}); err == nil {
			t.Errorf("%s: accepted, want an error", name)
		}
	}
	got, err := grants([]rbacv1.PolicyRule{{APIGroups: []string{"", "apps"}, Resources: []string{"pods"},
		ResourceNames: []string{"a"}, Verbs: []string{"get"}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"get apps/pods:a", "get pods:a"}; !slices.Equal(got, want) {
		t.Errorf("grants = %q, want %q", got, want)
	}
}

// readRole decodes a Role or ClusterRole file, refusing unknown fields (a misspelt "verb:" would
// otherwise grant nothing silently).
func readRole(path string) (kind, name string, rules []rbacv1.PolicyRule, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", "", nil, err
	}
	var head struct{ Kind string }
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return "", "", nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	switch head.Kind {
	case "ClusterRole":
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(raw, &role); err != nil {
			return "", "", nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if role.AggregationRule != nil {
			return "", "", nil, fmt.Errorf("%s: an aggregated ClusterRole grants what other roles say", path)
		}
		return role.Kind, role.Name, role.Rules, nil
	case "Role":
		var role rbacv1.Role
		if err := yaml.UnmarshalStrict(raw, &role); err != nil {
			return "", "", nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		return role.Kind, role.Name, role.Rules, nil
	}
	return "", "", nil, fmt.Errorf("%s holds a %q, not a Role or ClusterRole", path, head.Kind)
}

// grants expands rules into sorted, distinct "verb group/resource:name" entries.
func grants(rules []rbacv1.PolicyRule) ([]string, error) {
	var out []string
	for i, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			return nil, fmt.Errorf("rule %d grants non-resource URLs %q", i, r.NonResourceURLs)
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if len(list) == 0 {
				return nil, fmt.Errorf("rule %d is incomplete: %+v", i, r)
			}
			if slices.Contains(list, rbacv1.ResourceAll) {
				return nil, fmt.Errorf("rule %d has a wildcard: %+v", i, r)
			}
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if g != "" {
					res = g + "/" + res
				}
				for _, n := range names {
					if n != "" {
						n = ":" + n
					}
					for _, v := range r.Verbs {
						out = append(out, v+" "+res+n)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// missingFrom returns the entries of got that are not in want (both sorted).
func missingFrom(want, got []string) []string {
	var out []string
	for _, g := range got {
		if _, found := slices.BinarySearch(want, g); !found {
			out = append(out, g)
		}
	}
	return out
}
