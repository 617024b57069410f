// argocd-lua-test runs Argo CD health checks with Argo CD's own Lua engine (its util/lua
// package, gopher-lua inside), against their health_test.yaml cases.
//
//	argocd-lua-test [-json] DIR
//
// DIR is laid out like Argo CD's resource_customizations: <group>/<Kind>/health.lua, next to
// health_test.yaml ({tests: [{healthStatus: {status, message}, inputPath: testdata/x.yaml}]})
// and the test objects. Every script is registered the way an argocd-cm entry
// `resource.customizations.health.<group>_<Kind>` registers it (no useOpenLibs), and each test
// object is then given to Argo CD's GetResourceHealth, the call its controller makes: the
// object's own apiVersion and kind pick the script, and the script runs with the libraries
// Argo CD opens for a configured health check.
//
// Prints one line per case (PASS or FAIL, <group>/<Kind>, the input, what was expected and
// what came back), or with -json a JSON array of the results. Exits 1 if any case fails,
// 2 if DIR cannot be read.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type testFile struct {
	Tests []struct {
		InputPath    string            `json:"inputPath"`
		HealthStatus map[string]string `json:"healthStatus"`
	} `json:"tests"`
}

// result is one case: Want is the case's healthStatus, Got what Argo CD returned (its JSON
// form, so a field that is empty is absent, as in the test file), Error why there is none.
type result struct {
	Key   string            `json:"key"`
	Input string            `json:"input"`
	Pass  bool              `json:"pass"`
	Want  map[string]string `json:"want"`
	Got   map[string]string `json:"got,omitempty"`
	Error string            `json:"error,omitempty"`
}

func main() {
	asJSON := flag.Bool("json", false, "print the results as a JSON array")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-test [-json] DIR-OF-RESOURCE_CUSTOMIZATIONS")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	results, err := run(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua-test:", err)
		os.Exit(2)
	}
	failed := 0
	for _, r := range results {
		if !r.Pass {
			failed++
		}
	}
	if *asJSON {
		out, _ := json.MarshalIndent(results, "", "  ")
		fmt.Println(string(out))
	} else {
		for _, r := range results {
			fmt.Println(line(r))
		}
		fmt.Printf("%d cases, %d failed\n", len(results), failed)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

func line(r result) string {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	s := fmt.Sprintf("%s %s %s: want %s", verdict, r.Key, r.Input, describe(r.Want))
	if r.Error != "" {
		return s + ", error: " + r.Error
	}
	return s + ", got " + describe(r.Got)
}

func describe(status map[string]string) string {
	if status == nil {
		return "no health status"
	}
	s := fmt.Sprintf("%s %q", status["status"], status["message"])
	keys := make([]string, 0, len(status))
	for k := range status {
		if k != "status" && k != "message" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%q", k, status[k])
	}
	return s
}

func run(root string) ([]result, error) {
	// The scripts first, all of them, as one argocd-cm carries them.
	overrides := lua.ResourceHealthOverrides{}
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "health.lua" {
			return nil
		}
		dir := filepath.Dir(path)
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		script, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// <group>/<Kind>: the key lua.GetConfigMapKey makes of an object's group and kind.
		overrides[filepath.ToSlash(rel)] = appv1.ResourceOverride{HealthLua: string(script)}
		dirs = append(dirs, dir)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no */*/health.lua under %s", root)
	}
	var results []result
	for _, dir := range dirs {
		rel, _ := filepath.Rel(root, dir)
		raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			return nil, err
		}
		var tests testFile
		if err := yaml.Unmarshal(raw, &tests); err != nil {
			return nil, fmt.Errorf("%s/health_test.yaml: %w", dir, err)
		}
		if len(tests.Tests) == 0 {
			return nil, fmt.Errorf("%s/health_test.yaml has no tests", dir)
		}
		for _, test := range tests.Tests {
			if test.InputPath == "" || test.HealthStatus == nil {
				return nil, fmt.Errorf("%s/health_test.yaml: a test without inputPath or healthStatus", dir)
			}
			r := result{Key: filepath.ToSlash(rel), Input: test.InputPath, Want: test.HealthStatus}
			r.Got, err = check(overrides, filepath.Join(dir, test.InputPath))
			if err != nil {
				r.Error = err.Error()
			} else {
				r.Pass = reflect.DeepEqual(r.Want, r.Got)
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// check returns the health Argo CD gives the object in path, as the JSON it would show.
func check(overrides lua.ResourceHealthOverrides, path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// As Argo CD's TestLuaHealthScript reads its test objects.
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	status, err := overrides.GetResourceHealth(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return nil, err
	}
	if status == nil {
		return nil, errors.New("no health check applies to this object (is its apiVersion/kind that of the directory?)")
	}
	encoded, err := json.Marshal(status)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	if err := json.Unmarshal(encoded, &got); err != nil {
		return nil, err
	}
	return got, nil
}
