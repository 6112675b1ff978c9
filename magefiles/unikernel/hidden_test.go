package unikernel

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// hiddenSite adds to the fixture's site what dune would skip: a
// .well-known/ (ACME challenges, security.txt), an underscore directory, a
// hidden directory deeper down, and a dot file (which dune keeps).
func (f *fixture) hiddenSite(t *testing.T) {
	t.Helper()
	write(t, filepath.Join(f.siteDir, ".well-known", "security.txt"), "Contact: mailto:author@example.com\n")
	write(t, filepath.Join(f.siteDir, ".well-known", "acme-challenge", "token"), "token.key\n")
	write(t, filepath.Join(f.siteDir, "_private", "notes.html"), "<p>notes</p>\n")
	write(t, filepath.Join(f.siteDir, "2024", ".meta", "x.json"), "{}\n")
	write(t, filepath.Join(f.siteDir, ".nojekyll"), "")
}

func TestHiddenDirectoriesAreNamedForDune(t *testing.T) {
	f := newFixture(t)
	f.hiddenSite(t)
	if _, err := Build(context.Background(), f.options("spt")); err != nil {
		t.Fatalf("%v\n%s", err, f.logs)
	}
	got, err := os.ReadFile(filepath.Join(f.mirageDir, DuneHtdocs))
	if err != nil {
		t.Fatal(err)
	}
	var stanzas []string
	for _, l := range strings.Split(string(got), "\n") {
		if l != "" && !strings.HasPrefix(l, ";;") {
			stanzas = append(stanzas, l)
		}
	}
	want := []string{
		`(subdir "htdocs" (dirs :standard .* _*))`,
		`(subdir "htdocs/2024" (dirs :standard .* _*))`,
	}
	if !slices.Equal(stanzas, want) {
		t.Errorf("%s holds\n%s\nwant the stanzas\n%s", DuneHtdocs, got, strings.Join(want, "\n"))
	}
	for _, p := range []string{".well-known/acme-challenge/token", "_private/notes.html", "2024/.meta/x.json", ".nojekyll"} {
		if _, err := os.Stat(filepath.Join(f.mirageDir, HtdocsDir, p)); err != nil {
			t.Errorf("%s not copied into htdocs: %v", p, err)
		}
	}
	// It is generated: not a source of the kernel, and rewritten each build.
	before, _ := hashSources(f.mirageDir)
	os.WriteFile(filepath.Join(f.mirageDir, DuneHtdocs), []byte("changed"), 0o644)
	if after, _ := hashSources(f.mirageDir); after != before {
		t.Error("dune.htdocs counts as a source of the Mirage project")
	}
}

func TestSiteWithoutHiddenDirectoriesNamesNone(t *testing.T) {
	f := newFixture(t)
	if _, err := Build(context.Background(), f.options("virtio")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(f.mirageDir, DuneHtdocs))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "(subdir") {
		t.Errorf("dune.htdocs names directories of a site with no hidden ones:\n%s", got)
	}
}

// TestFilesDuneCannotCarryFailTheStep: what dune would drop or misread stops
// the build, naming the files, before mirage runs.
func TestFilesDuneCannotCarryFailTheStep(t *testing.T) {
	cases := map[string][]string{
		"drafts/post.html~":   {"editor files", "drafts/post.html~", "rename them"},
		".#index.html":        {"editor files", ".#index.html"},
		"notes/todo.swp":      {"editor files", "notes/todo.swp"},
		"guide/dune":          {"dune reads as its own build files", "guide/dune"},
		"x/dune-project":      {"dune reads as its own build files", "x/dune-project"},
		`we"ird/.hidden/a`:    {"cannot be written in one", `we"ird`},
		"100%/_underscore/b":  {"cannot be written in one", "100%"},
		"ok/.well-known/ok.t": nil,
	}
	for file, wants := range cases {
		f := newFixture(t)
		write(t, filepath.Join(f.siteDir, filepath.FromSlash(file)), "x\n")
		_, err := Build(context.Background(), f.options("spt"))
		if wants == nil {
			if err != nil {
				t.Errorf("%s: %v", file, err)
			}
			continue
		}
		for _, want := range wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v; want it to say %q", file, err, want)
			}
		}
		if calls := f.calls(t); len(calls) != 0 {
			t.Errorf("%s: mirage ran: %q", file, calls)
		}
	}
}

// crunchStanza is the dune rule config.ml's crunch device adds to Mirage's
// generated dune.build: the quoted string holding "ocaml-crunch".
func crunchStanza(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../_mirage/config.ml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?s)\{\|(.*?)\|\}`).FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], "ocaml-crunch") {
			return m[1]
		}
	}
	t.Fatal("config.ml has no {|…|} dune stanza running ocaml-crunch")
	return ""
}

// TestHiddenDirectoriesReachTheCrunchRule runs Debian's real dune on a
// project laid out as `mirage configure` lays it out (dune-project at
// lang 2.9 from Functoria's Dune.base_project; dune holding
// "(include dune.build)"; dune.build holding the device stanzas, here
// config.ml's crunch rule) around the site as the step copies it, with a
// stand-in ocaml-crunch that lists the files dune hands it. Every site file
// must be listed; with an empty dune.htdocs the hidden ones are not, which
// is the bug this guards against.
func TestHiddenDirectoriesReachTheCrunchRule(t *testing.T) {
	dune := testtool.Need(t, "dune", "ocaml-dune")
	testtool.Need(t, "ocamlc", "ocaml-nox") // dune sets up its default context with ocamlc -config
	f := newFixture(t)
	f.hiddenSite(t)
	if err := syncDir(f.siteDir, filepath.Join(f.mirageDir, HtdocsDir)); err != nil {
		t.Fatal(err)
	}
	if err := writeDuneHtdocs(f.mirageDir); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.mirageDir, "dune-project"), "(lang dune 2.9)\n")
	write(t, filepath.Join(f.mirageDir, "dune"), "(include dune.build)\n")
	write(t, filepath.Join(f.mirageDir, "dune.build"), crunchStanza(t))
	bin := t.TempDir()
	write(t, filepath.Join(bin, "ocaml-crunch"), "#!/bin/sh\n# ocaml-crunch -o OUT.ml DIR: list what it was given\n"+
		"[ \"$1\" = -o ] || exit 2\n(cd \"$3\" && find . -type f | sort) > \"$2\"\n: > \"${2%.ml}.mli\"\n")
	os.Chmod(filepath.Join(bin, "ocaml-crunch"), 0o755)

	var want []string
	filepath.WalkDir(f.siteDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(f.siteDir, p)
			want = append(want, "./"+filepath.ToSlash(rel))
		}
		return err
	})
	slices.Sort(want)

	crunched := func() []string {
		t.Helper()
		os.RemoveAll(filepath.Join(f.mirageDir, "_build"))
		cmd := exec.Command(dune, "build", "--root", ".", "./static_htdocs.ml")
		cmd.Dir = f.mirageDir
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "DUNE_CACHE=disabled")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dune build: %v\n%s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(f.mirageDir, "_build", "default", "static_htdocs.ml"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			got = append(got, strings.TrimSpace(l))
		}
		slices.Sort(got)
		return got
	}
	if got := crunched(); !slices.Equal(got, want) {
		t.Errorf("dune gave ocaml-crunch\n%s\nwant every site file\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	os.WriteFile(filepath.Join(f.mirageDir, DuneHtdocs), nil, 0o644)
	got := crunched()
	if slices.Contains(got, "./.well-known/security.txt") || !slices.Contains(got, "./.nojekyll") {
		t.Errorf("without dune.htdocs dune gave ocaml-crunch\n%s\nit should skip the hidden directories (and keep dot files): is the test still looking at dune's behaviour?", strings.Join(got, "\n"))
	}
}
