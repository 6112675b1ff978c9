package unikernel

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// workflow is the part of a GitHub Actions workflow the test reads.
type workflow struct {
	On struct {
		Push struct {
			Paths    []string `yaml:"paths"`
			Branches []string `yaml:"branches"`
		} `yaml:"push"`
		Schedule []struct {
			Cron string `yaml:"cron"`
		} `yaml:"schedule"`
	} `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Jobs        map[string]struct {
		Strategy struct {
			Matrix map[string][]string `yaml:"matrix"`
		} `yaml:"strategy"`
		Steps []struct {
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			With map[string]string `yaml:"with"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

const workflowFile = "../../.github/workflows/unikernel.yml"

func readWorkflow(t *testing.T) workflow {
	t.Helper()
	b, err := os.ReadFile(workflowFile)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("%s does not parse: %v", workflowFile, err)
	}
	return w
}

// weeklyCron is a POSIX cron line that fires once a week: a fixed minute
// and hour on one day of the week, any day of the month, any month.
var weeklyCron = regexp.MustCompile(`^(\d{1,2}) (\d{1,2}) \* \* ([0-6])$`)

// TestWorkflowRunsOnUnikernelChangesAndWeekly: the unikernel workflow runs
// on pushes touching _mirage/ or magefiles/unikernel (paths that exist, so
// a rename cannot silently stop it), on every branch, and once a week.
func TestWorkflowRunsOnUnikernelChangesAndWeekly(t *testing.T) {
	w := readWorkflow(t)
	for _, p := range []string{"_mirage/**", "magefiles/unikernel/**"} {
		if !slices.Contains(w.On.Push.Paths, p) {
			t.Errorf("on.push.paths %q lacks %q", w.On.Push.Paths, p)
		}
	}
	for _, p := range w.On.Push.Paths {
		pattern := filepath.Join("../..", p)
		if dir, ok := strings.CutSuffix(p, "/**"); ok {
			pattern = filepath.Join("../..", dir, "*")
		}
		matches, _ := filepath.Glob(pattern)
		if len(matches) == 0 {
			t.Errorf("on.push.paths %q matches nothing in the repository", p)
		}
	}
	if len(w.On.Push.Branches) != 0 {
		t.Errorf("pushes to branches %q only; a change on any branch must be built", w.On.Push.Branches)
	}
	if len(w.On.Schedule) != 1 {
		t.Fatalf("schedule %+v; want one weekly cron", w.On.Schedule)
	}
	m := weeklyCron.FindStringSubmatch(w.On.Schedule[0].Cron)
	if m == nil {
		t.Fatalf("cron %q is not weekly (minute hour * * weekday)", w.On.Schedule[0].Cron)
	}
	if min, _ := strconv.Atoi(m[1]); min > 59 {
		t.Errorf("cron minute %d", min)
	}
	if hour, _ := strconv.Atoi(m[2]); hour > 23 {
		t.Errorf("cron hour %d", hour)
	}
	if w.Permissions["contents"] != "read" || len(w.Permissions) != 1 {
		t.Errorf("permissions %v; the workflow only reads the repository", w.Permissions)
	}
}

// TestWorkflowBuildsEverySupportedMirage: the matrix holds supported
// releases only, at least one from each row of the table; each job
// installs its release with ocaml/setup-ocaml and opam, builds spt and unix
// with `mage unikernel`, and fetches the blog from the unix kernel.
func TestWorkflowBuildsEverySupportedMirage(t *testing.T) {
	w := readWorkflow(t)
	job, ok := w.Jobs["unikernel"]
	if !ok {
		t.Fatalf("no unikernel job in %s", workflowFile)
	}
	versions := job.Strategy.Matrix["mirage"]
	covered := make([]bool, len(Supported))
	for _, s := range versions {
		v, err := ParseVersion(s)
		if err != nil {
			t.Errorf("matrix: %v", err)
			continue
		}
		if _, err := Lookup(v); err != nil {
			t.Errorf("matrix: %v", err)
		}
		for i, r := range Supported {
			if !v.Less(r.From) && v.Less(r.Before) {
				covered[i] = true
			}
		}
	}
	for i, c := range covered {
		if !c {
			t.Errorf("no MirageOS in the matrix %q from the row %s up to %s", versions, Supported[i].From, Supported[i].Before)
		}
	}

	var setupOCaml, opamCache, installs, spt, unix, serves bool
	for _, s := range job.Steps {
		switch {
		case strings.HasPrefix(s.Uses, "ocaml/setup-ocaml@"):
			setupOCaml = s.With["ocaml-compiler"] != ""
			opamCache = opamCache || s.With["dune-cache"] == "true"
		case strings.HasPrefix(s.Uses, "actions/cache@"):
			opamCache = opamCache || strings.Contains(s.With["path"], ".opam")
		case strings.Contains(s.Run, "opam install") && strings.Contains(s.Run, "mirage=${{ matrix.mirage }}"):
			installs = setupOCaml
		case strings.Contains(s.Run, "go run mage.go unikernel"):
			if !strings.HasPrefix(s.Run, "opam exec -- ") || !installs {
				t.Errorf("`mage unikernel` runs outside the opam environment or before mirage is installed: %q", s.Run)
			}
			if s.Env["DEPLOY_HTTPS"] != "false" {
				t.Errorf("`mage unikernel` in a workflow without AWS needs DEPLOY_HTTPS: false (the Cert step needs AWS): %q", s.Run)
			}
			spt = spt || s.Env["DEPLOY_MIRAGE_TARGET"] == "spt"
			unix = unix || s.Env["DEPLOY_MIRAGE_TARGET"] == "unix"
		case strings.Contains(s.Run, "_mirage/dist/blog --port"):
			serves = unix && strings.Contains(s.Run, "curl") && strings.Contains(s.Run, "build-id") && strings.Contains(s.Run, ".well-known/")
		}
	}
	for what, ok := range map[string]bool{
		"ocaml/setup-ocaml with a compiler": setupOCaml, "an opam cache": opamCache, "opam install of the matrix's mirage": installs,
		"mage unikernel for spt": spt, "mage unikernel for unix": unix, "the unix kernel started and the blog fetched from it": serves,
	} {
		if !ok {
			t.Errorf("the unikernel job lacks %s", what)
		}
	}
}

// TestCIInstallsASupportedMirage: the CI jobs that deploy install Mirage
// through .ci/install-mirage, which asks opam for the releases the table
// knows, not whatever is newest.
func TestCIInstallsASupportedMirage(t *testing.T) {
	const script = "../../.ci/install-mirage"
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	var constraint string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "mirage="); ok {
			constraint = strings.Trim(strings.Fields(v)[0], "'")
		}
	}
	if constraint != OpamConstraint() {
		t.Errorf("%s installs %q; the table supports %s", script, constraint, OpamConstraint())
	}
	if !strings.Contains(string(b), `opam install --switch="$switch" -y "$mirage"`) {
		t.Errorf("%s does not install $mirage into its switch", script)
	}
	for _, f := range []string{"../../.github/workflows/deploy.yml", "../../.travis.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "bash .ci/install-mirage") {
			t.Errorf("%s does not install Mirage with .ci/install-mirage", f)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "opam install") && strings.Contains(l, "mirage") {
				t.Errorf("%s: %q installs Mirage beside .ci/install-mirage", f, strings.TrimSpace(l))
			}
		}
	}
}
