// cdi-reference: the CDI project's own Go library (tags.cncf.io/container-device-interface)
// resolving devices, for ferrocri's differential test (tests/cdi.rs). Written for ferrocri;
// it only calls the library's public API.
//
//	cdi-reference DIR[,DIR...] [DEVICE...]
//
// prints one JSON object: "errors" (spec file → messages), "devices" (every device the
// cache resolves) and, when devices are named, "spec" (an empty OCI spec after
// InjectDevices) or "injectError".
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

type result struct {
	Errors      map[string][]string `json:"errors"`
	Devices     []string            `json:"devices"`
	Spec        *oci.Spec           `json:"spec,omitempty"`
	InjectError string              `json:"injectError,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cdi-reference DIR[,DIR...] [DEVICE...]")
		os.Exit(2)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(strings.Split(os.Args[1], ",")...), cdi.WithAutoRefresh(false))
	if cache == nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = cache.Refresh()
	out := result{Errors: map[string][]string{}, Devices: cache.ListDevices()}
	sort.Strings(out.Devices)
	for path, errs := range cache.GetErrors() {
		for _, e := range errs {
			out.Errors[path] = append(out.Errors[path], e.Error())
		}
	}
	if devices := os.Args[2:]; len(devices) > 0 {
		spec := &oci.Spec{Process: &oci.Process{}, Linux: &oci.Linux{}}
		if _, err := cache.InjectDevices(spec, devices...); err != nil {
			out.InjectError = err.Error()
		} else {
			out.Spec = spec
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
