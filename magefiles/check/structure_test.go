package check

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/unikernel-blog/blog/"

// steps are the pipeline's packages in order; a step's subpackages (the
// image layouts) count as the step.
var steps = []string{"site", "cert", "unikernel", "image", "bake", "launch", "swap"}

type goPackage struct {
	ImportPath string
	Imports    []string // direct, test files excluded
	Deps       []string // transitive, test files excluded
}

// packages lists the module's packages as `go list` sees them.
func packages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	for d := json.NewDecoder(bytes.NewReader(out)); ; {
		var p goPackage
		if err := d.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	return pkgs
}

// local is an import path relative to magefiles/, "" outside it.
func local(path string) string {
	rest, ok := strings.CutPrefix(path, module+"magefiles/")
	if !ok {
		return ""
	}
	return rest
}

// stepOf is the index of the step a package belongs to, or -1.
func stepOf(path string) int {
	rel := local(path)
	for i, s := range steps {
		if rel == s || strings.HasPrefix(rel, s+"/") {
			return i
		}
	}
	return -1
}

// TestStepsImportOnlyTheStepBefore: receipts and artifacts flow forward, so a
// step imports no step after it and none but the one right before it.
// Launch in particular reads Bake's receipt, never the image's or the site's.
func TestStepsImportOnlyTheStepBefore(t *testing.T) {
	for _, p := range packages(t) {
		from := stepOf(p.ImportPath)
		if from < 0 {
			continue
		}
		for _, imp := range p.Imports {
			to := stepOf(imp)
			if to < 0 || to == from {
				continue
			}
			if to != from-1 {
				t.Errorf("%s (step %s) imports %s (step %s): a step may import only the step right before it", local(p.ImportPath), steps[from], local(imp), steps[to])
			}
		}
	}
}

// TestFleetImportsNoStep: the AWS-side model is below every step.
func TestFleetImportsNoStep(t *testing.T) {
	for _, p := range packages(t) {
		if local(p.ImportPath) != "fleet" {
			continue
		}
		for _, d := range p.Deps {
			if stepOf(d) >= 0 {
				t.Errorf("fleet depends on step package %s", local(d))
			}
		}
		return
	}
	t.Fatal("no fleet package")
}

// TestTestSupportOnlyInTests: nothing that ships (the targets, the steps, the
// host's init) depends on the test-only packages, the magefiles' or the
// host init's.
func TestTestSupportOnlyInTests(t *testing.T) {
	supports := []string{module + "magefiles/internal/testsupport/", module + "hostinit/internal/testsupport/"}
	isSupport := func(path string) bool {
		return slices.ContainsFunc(supports, func(s string) bool { return strings.HasPrefix(path, s) })
	}
	for _, p := range packages(t) {
		if isSupport(p.ImportPath) {
			continue
		}
		for _, d := range p.Deps {
			if isSupport(d) {
				t.Errorf("%s depends on the test-only package %s", strings.TrimPrefix(p.ImportPath, module), strings.TrimPrefix(d, module))
			}
		}
	}
}

// TestOneDefinitionEach: the undo mechanism, the sha shortener and the host
// kernel's default path are each defined once in the code that ships.
func TestOneDefinitionEach(t *testing.T) {
	defs := map[string]*regexp.Regexp{
		"the undo type":            regexp.MustCompile(`(?m)^type \w*[Uu]ndo struct`),
		"short()":                  regexp.MustCompile(`(?m)^func [Ss]hort\(`),
		"the default kernel path":  regexp.MustCompile(`"/opt/blog-host-kernel"`),
		"the cleanup time budget":  regexp.MustCompile(`\b\w*[Cc]leanupTimeout\s*=\s*\d`),
		"the AWS error classifier": regexp.MustCompile(`(?m)^func HasCode\(`),
	}
	found := map[string][]string{}
	for _, dir := range []string{"../../magefiles", "../../hostinit"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testsupport" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for what, re := range defs {
				for range re.FindAllIndex(src, -1) {
					found[what] = append(found[what], path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for what := range defs {
		if n := len(found[what]); n != 1 {
			slices.Sort(found[what])
			t.Errorf("%s is defined %d times (%v); want exactly one definition", what, n, found[what])
		}
	}
}
