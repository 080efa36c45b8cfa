package workflowrun

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/pnsflow/pnsflow/internal/podspec"
)

// hashLen hex characters of sha256 (40 bits) keep truncated names of distinct StepRuns apart.
const hashLen = 10

// StepRunName is the deterministic name of one attempt of one item of a step:
// <run>-<step>[-<item>][-r<attempt>], item -1 meaning "not a fan-out" and attempt 0 the first
// try. A restarted controller computes the same name, so a repeated create is AlreadyExists,
// never a second StepRun. A name longer than a StepRun name may be (podspec.MaxStepRunNameLength,
// 249: its Pod's name adds "-pod") keeps a prefix and a hash of the full name.
func StepRunName(run, step string, item, attempt int) string {
	name := run + "-" + step
	if item >= 0 {
		name += "-" + strconv.Itoa(item)
	}
	if attempt > 0 {
		name += "-r" + strconv.Itoa(attempt)
	}
	if len(name) <= podspec.MaxStepRunNameLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	keep := podspec.MaxStepRunNameLength - 1 - hashLen
	// A subdomain must end alphanumeric, so a cut just after '-' or '.' is trimmed back.
	prefix := strings.TrimRight(name[:keep], "-.")
	return prefix + "-" + hex.EncodeToString(sum[:])[:hashLen]
}

// suffixRE matches what StepRunName may append to a step name.
var suffixRE = regexp.MustCompile(`^(r?[0-9]+)(-r[0-9]+)?$`)

// nameClash reports two step names whose StepRuns could share a name: "a" item 1 and a step
// "a-1" are both <run>-a-1.
func nameClash(names []string) error {
	for _, s := range names {
		for _, t := range names {
			if s != t && strings.HasPrefix(t, s+"-") && suffixRE.MatchString(t[len(s)+1:]) {
				return fmt.Errorf("steps %q and %q could give their StepRuns the same name: rename one", s, t)
			}
		}
	}
	return nil
}
