package executorconfig

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Keys of an artifact repository ConfigMap's data.
const (
	RepoEndpoint    = "endpoint"
	RepoBucket      = "bucket"
	RepoRegion      = "region"
	RepoInsecure    = "insecure"
	RepoPathStyle   = "pathStyle"
	RepoKeyPrefix   = "keyPrefix"
	RepoSecretName  = "secretName"
	RepoArchiveLogs = "archiveLogs"
	// DefaultRegion is used when the ConfigMap names none; S3-compatible stores ignore it.
	DefaultRegion = "us-east-1"
)

var repositoryKeys = map[string]bool{
	RepoEndpoint: true, RepoBucket: true, RepoRegion: true, RepoInsecure: true,
	RepoPathStyle: true, RepoKeyPrefix: true, RepoSecretName: true, RepoArchiveLogs: true,
}

// ParseRepository reads a repository ConfigMap's data. endpoint is a host[:port] or an http(s)
// URL; pathStyle defaults to true (what self-hosted S3 servers need); unknown keys are refused so
// a typo is not silently ignored.
func ParseRepository(data map[string]string) (Repository, error) {
	var unknown []string
	for k := range data {
		if !repositoryKeys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return Repository{}, fmt.Errorf("unknown keys %s (want endpoint, bucket, region, insecure, pathStyle, keyPrefix, secretName, archiveLogs)", strings.Join(unknown, ", "))
	}
	r := Repository{
		Endpoint: strings.TrimSpace(data[RepoEndpoint]), Bucket: strings.TrimSpace(data[RepoBucket]),
		Region: strings.TrimSpace(data[RepoRegion]), KeyPrefix: strings.Trim(strings.TrimSpace(data[RepoKeyPrefix]), "/"),
		SecretName: strings.TrimSpace(data[RepoSecretName]), PathStyle: true,
	}
	var errs []error
	for key, v := range map[string]string{RepoEndpoint: r.Endpoint, RepoBucket: r.Bucket, RepoSecretName: r.SecretName} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", key))
		}
	}
	if r.Region == "" {
		r.Region = DefaultRegion
	}
	if scheme, host, ok := strings.Cut(r.Endpoint, "://"); ok {
		switch scheme {
		case "http":
			r.Insecure = true
		case "https":
		default:
			errs = append(errs, fmt.Errorf("endpoint %q: scheme must be http or https", r.Endpoint))
		}
		r.Endpoint = strings.TrimSuffix(host, "/")
	}
	if r.Endpoint != "" {
		if u, err := url.Parse("//" + r.Endpoint); err != nil || u.Host != r.Endpoint {
			errs = append(errs, fmt.Errorf("endpoint %q: want host[:port]", data[RepoEndpoint]))
		}
	}
	for key, dst := range map[string]*bool{RepoInsecure: &r.Insecure, RepoPathStyle: &r.PathStyle, RepoArchiveLogs: &r.ArchiveLogs} {
		if v, ok := data[key]; ok {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q: want true or false", key, v))
				continue
			}
			*dst = b
		}
	}
	if strings.Contains(r.KeyPrefix, "..") {
		errs = append(errs, fmt.Errorf("keyPrefix %q: must not contain '..'", r.KeyPrefix))
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return Repository{}, errors.Join(errs...)
	}
	return r, nil
}
