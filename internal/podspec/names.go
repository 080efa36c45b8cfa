package podspec

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	podNameSuffix = "-pod"
	// hashLen hex characters of sha256 (40 bits) keep truncated label values apart.
	hashLen = 10
)

// shortHash is the first hashLen hex characters of sha256(s).
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// MaxStepRunNameLength is the longest StepRun name the API server accepts (a CEL rule on the
// StepRun type): short enough that PodName never needs a hash, so the name of a StepRun's Pod is
// always computable from the StepRun's name alone, in Go and in CEL (the executor admission
// policy in config/policy checks `request.name + '-pod'`).
const MaxStepRunNameLength = validation.DNS1123SubdomainMaxLength - len(podNameSuffix)

// PodName is the name of the StepRun's Pod: the StepRun's name plus "-pod". It is derived from
// the StepRun's name alone, so a restarted controller finds the Pod it made instead of making a
// second one; a StepRun name is at most MaxStepRunNameLength characters, so the result is always
// a DNS subdomain of at most 253 characters.
func PodName(stepRunName string) string {
	return stepRunName + podNameSuffix
}

// LabelValue turns s (normally a StepRun name, which may be up to 249 characters) into a valid
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
