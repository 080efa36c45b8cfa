package podspec

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	podNameSuffix = "-pod"
	// hashLen hex characters of sha256 (40 bits) keep truncated names of distinct StepRuns apart.
	hashLen = 10
)

// shortHash is the first hashLen hex characters of sha256(s).
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// PodName is the name of the StepRun's Pod. It is derived from the StepRun's name alone, so a
// restarted controller finds the Pod it made instead of making a second one. A StepRun name
// (itself a DNS subdomain) too long for the suffix is truncated and disambiguated by a hash of
// the full name; the result is always a DNS subdomain of at most 253 characters.
func PodName(stepRunName string) string {
	if len(stepRunName)+len(podNameSuffix) <= validation.DNS1123SubdomainMaxLength {
		return stepRunName + podNameSuffix
	}
	keep := validation.DNS1123SubdomainMaxLength - len(podNameSuffix) - 1 - hashLen
	// A subdomain label must end alphanumeric, so a cut just after '-' or '.' is trimmed back.
	prefix := strings.TrimRight(stepRunName[:keep], "-.")
	if prefix == "" {
		return shortHash(stepRunName) + podNameSuffix
	}
	return prefix + "-" + shortHash(stepRunName) + podNameSuffix
}

// LabelValue turns s (normally a StepRun name, which may be up to 253 characters) into a valid
// label value. A valid value is returned unchanged; anything else becomes a prefix of s, with
// characters a label value cannot hold replaced by '-', plus "-" and a hash of all of s, so
// distinct inputs stay distinct and the same input always gives the same value.
func LabelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	keep := min(len(s), validation.LabelValueMaxLength-1-hashLen)
	b := []byte(s[:keep])
	for i, c := range b {
		if !isAlphanumeric(c) && c != '-' && c != '_' && c != '.' {
			b[i] = '-'
		}
	}
	// A label value must begin and end alphanumeric.
	prefix := strings.Trim(string(b), "-_.")
	if prefix == "" {
		return shortHash(s)
	}
	return prefix + "-" + shortHash(s)
}

func isAlphanumeric(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
