package unikernel

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// DuneHtdocs is the dune fragment config.ml's crunch rule includes: the
// site's directories whose names start with "." or "_" (.well-known/, say),
// named so that dune sees them. Dune's source tree otherwise skips them
// (its default `dirs` glob is "[!._]*", src/source/source_dir_status.ml in
// ocaml/dune), the crunch rule's (source_tree htdocs) copies only what dune
// sees, and ocaml-crunch itself skips nothing (src/crunch.ml in
// mirage/ocaml-crunch walks every entry but "." and "..").
const DuneHtdocs = "dune.htdocs"

// duneSkipsDir reports a directory name dune's default `dirs` leaves out.
func duneSkipsDir(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// duneSkipsFile reports a file name dune takes for an editor's temporary
// file and leaves out of the source tree whatever the dune files say
// (is_temp_file, src/source/dir_contents.ml in ocaml/dune).
func duneSkipsFile(name string) bool {
	return strings.HasPrefix(name, ".#") || strings.HasSuffix(name, "~") || strings.HasSuffix(name, ".swp")
}

// duneFiles are the names dune reads as its own files wherever they are in
// the source tree, so a site file of that name would break the build.
var duneFiles = map[string]bool{"dune": true, "dune-project": true}

// duneName reports whether name can be written in a dune string as it is:
// no quote or backslash to escape, no "%" (which would start a %{variable}),
// nothing unprintable.
func duneName(name string) bool {
	if !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '%' {
			return false
		}
	}
	return true
}

// writeDuneHtdocs writes mirageDir/dune.htdocs for the site copied into
// mirageDir/htdocs: a `(subdir … (dirs :standard .* _*))` for each directory
// that holds a directory dune would skip. A site file dune leaves out
// whatever it is told, a file dune would read as its own, or a directory name
// a dune file cannot spell, fails the step naming them, so no file is
// silently missing from the kernel.
func writeDuneHtdocs(mirageDir string) error {
	root := filepath.Join(mirageDir, HtdocsDir)
	var subdirs, skippedFiles, badNames, duneNamed []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if !d.IsDir() {
			if duneSkipsFile(d.Name()) {
				skippedFiles = append(skippedFiles, rel)
			}
			if duneFiles[d.Name()] {
				duneNamed = append(duneNamed, rel)
			}
			return nil
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(entries, func(e fs.DirEntry) bool { return e.IsDir() && duneSkipsDir(e.Name()) }) {
			return nil
		}
		dir := path.Join(HtdocsDir, rel)
		if !duneName(dir) {
			badNames = append(badNames, rel)
			return nil
		}
		subdirs = append(subdirs, dir)
		return nil
	})
	if err != nil {
		return fmt.Errorf("unikernel: reading the site copied into %s: %w", root, err)
	}
	if len(skippedFiles) > 0 {
		return fmt.Errorf("unikernel: dune would leave these site files out of the kernel, taking them for editor files (a name starting with .# or ending in ~ or .swp): %s; rename them, or exclude them from the site in _config.yml",
			strings.Join(skippedFiles, ", "))
	}
	if len(duneNamed) > 0 {
		return fmt.Errorf("unikernel: these site files have names dune reads as its own build files, so `mirage configure` would fail on them: %s; rename them, or exclude them from the site in _config.yml",
			strings.Join(duneNamed, ", "))
	}
	if len(badNames) > 0 {
		return fmt.Errorf("unikernel: these site directories hold directories starting with . or _, which dune skips unless named in a dune file, and their paths cannot be written in one (a quote, backslash, %% or control character): %s; rename them",
			strings.Join(badNames, ", "))
	}
	var b strings.Builder
	b.WriteString(";; Written by `mage unikernel` (magefiles/unikernel/hidden.go) for the site in\n" +
		";; htdocs/: dune skips directories starting with . or _ (.well-known/) unless\n" +
		";; told, and config.ml's crunch rule takes only what dune sees.\n")
	for _, d := range subdirs {
		// duneName let through nothing a dune string would escape.
		fmt.Fprintf(&b, "(subdir \"%s\" (dirs :standard .* _*))\n", d)
	}
	if err := os.WriteFile(filepath.Join(mirageDir, DuneHtdocs), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("unikernel: writing %s: %w", DuneHtdocs, err)
	}
	return nil
}
