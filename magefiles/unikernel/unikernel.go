// Package unikernel builds the MirageOS unikernel in _mirage that serves the
// site, or takes a prebuilt kernel (UNIKERNEL=/path) so every later step can
// run without a Mirage toolchain.
package unikernel

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/logx"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/tool"
)

// HtdocsDir is where the site is copied inside the Mirage project; config.ml
// crunches it into the kernel.
const HtdocsDir = "htdocs"

// installMirage is the fix for a missing mirage command: get Mirage, or do
// without it.
var installMirage = "install MirageOS with opam (https://mirage.io/docs/install): " +
	"`opam init && opam install '" + OpamConstraint() + "'`, then `eval $(opam env)`; " +
	"or set mirage_target: none (deploy.mirage_target in _config.yml, or DEPLOY_MIRAGE_TARGET=none) " +
	"to serve the site from the host image's built-in server without Mirage; " +
	"or set UNIKERNEL=/path/to/kernel to use a kernel built elsewhere"

// NoTarget is mirage_target: none: no unikernel. The host layout then serves
// the site with its built-in static server.
const NoTarget = "none"

// UnixTarget is mirage_target: unix: a kernel that runs as a process on this
// machine (dist/blog), which no image carries.
const UnixTarget = "unix"

// Options configure a unikernel build.
type Options struct {
	MirageDir string // the Mirage project (config.ml)
	SiteDir   string // the built site, copied to MirageDir/htdocs
	BuildDir  string // where the receipt goes
	Target    string // mirage configure -t TARGET
	Prebuilt  string // a kernel built elsewhere; skips the build
	// Publish is set for a deploy: a prebuilt kernel that does not carry
	// the site's current build fails the step instead of a warning, since
	// deploying it would not publish the site.
	Publish bool
	Force   bool   // build even when nothing changed
	Mirage  string // the mirage command; "" means "mirage"
	Make    string // the make command; "" means "make"
	Log     *logrus.Entry
}

// Build produces the kernel and writes _build/unikernel.json.
func Build(ctx context.Context, o Options) (*Receipt, error) {
	if o.Log == nil {
		o.Log = logx.Step("unikernel")
	}
	if o.Mirage == "" {
		o.Mirage = "mirage"
	}
	if o.Make == "" {
		o.Make = "make"
	}
	// The Site step's build (carried by the Cert step's receipt, with the
	// certificate) is the one the kernel goes out with.
	built, err := cert.ReadReceipt(o.BuildDir)
	if err != nil {
		return nil, fmt.Errorf("unikernel: %w", err)
	}
	if o.Prebuilt != "" {
		return usePrebuilt(o, built)
	}
	// The kernel, or with none the host, serves the site on disk: it must be that build.
	if got := cert.StampedBuildID(o.SiteDir); got != built.BuildID {
		return nil, fmt.Errorf("unikernel: %s holds build %q, not build %s of the site receipt; run `mage site` first", o.SiteDir, got, built.BuildID)
	}
	if o.Target == NoTarget {
		return noUnikernel(o, built)
	}
	if o.Target == "" {
		return nil, fmt.Errorf("unikernel: no target; set deploy.mirage_target in _config.yml")
	}
	buildID := built.BuildID
	sources, err := hashSources(o.MirageDir)
	if err != nil {
		return nil, err
	}

	// Look the tools up before touching anything, so a missing toolchain
	// fails fast with its fix. The installed Mirage decides the configure
	// options, so it is an input too: an upgrade rebuilds.
	mirage, err := tool.Find("unikernel", o.Mirage, installMirage)
	if err != nil {
		return nil, err
	}
	makeCmd, err := tool.Find("unikernel", o.Make, "install make: `sudo apt-get install make`")
	if err != nil {
		return nil, err
	}
	version, err := DetectVersion(ctx, mirage)
	if err != nil {
		return nil, fmt.Errorf("unikernel: %w", err)
	}
	configure, err := ConfigureArgs(mirage, o.Target, version)
	if err != nil {
		return nil, fmt.Errorf("unikernel: %w", err)
	}
	inputs := map[string]string{
		"mirage_sources": sources, "site_build_id": buildID, "target": o.Target,
		"mirage_version": version.String(), "configure": strings.Join(configure[1:], " "),
	}
	if t := built.TLS(); t != nil {
		// The certificate is crunched into the kernel: a renewal, a new
		// alias or HSTS setting is a new kernel.
		inputs["tls"] = t.SHA256 + " " + strings.Join(append([]string{t.Domain}, t.Aliases...), ",") + fmt.Sprintf(" %d", t.HSTSMaxAge)
	}
	log := o.Log.WithFields(logrus.Fields{"target": o.Target, "build_id": buildID, "mirage_version": version.String()})

	if prev, ok := upToDate(o.BuildDir, inputs); ok && !o.Force {
		log.WithField("kernel", prev.Kernel).Info("unikernel sources, site and Mirage unchanged; reusing the kernel (FORCE=1 rebuilds)")
		return prev, nil
	}

	htdocs := filepath.Join(o.MirageDir, HtdocsDir)
	if err := syncDir(o.SiteDir, htdocs); err != nil {
		return nil, fmt.Errorf("unikernel: copying the site into %s: %w", htdocs, err)
	}
	if err := placeTLS(o.MirageDir, built.TLS()); err != nil {
		return nil, err
	}
	if err := writeDuneHtdocs(o.MirageDir); err != nil {
		return nil, err
	}

	steps := [][]string{
		configure,
		{makeCmd, "depend"},
		{makeCmd, "build"},
	}
	r := &Receipt{Target: o.Target, BuildID: buildID, Commit: built.Commit, MirageVersion: version.String(), Inputs: inputs, TLS: built.TLS()}
	for _, argv := range steps {
		line := filepath.Base(argv[0]) + " " + strings.Join(argv[1:], " ")
		log.Infof("running %s in %s", line, o.MirageDir)
		if err := tool.Run(ctx, log, o.MirageDir, argv[0], argv[1:]...); err != nil {
			return nil, fmt.Errorf("unikernel: `%s` failed in %s: %w; its output is above", line, o.MirageDir, err)
		}
		r.Commands = append(r.Commands, line)
	}

	kernel, err := findKernel(o.MirageDir, o.Target)
	if err != nil {
		return nil, err
	}
	r.Kernel = kernel
	if r.TLS != nil {
		// The kernel holds the private key now: owner-only, like the key file.
		if err := os.Chmod(kernel, 0o600); err != nil {
			return nil, fmt.Errorf("unikernel: %w", err)
		}
	}
	if r.KernelSHA256, err = receipt.HashFile(kernel); err != nil {
		return nil, fmt.Errorf("unikernel: %w", err)
	}
	log.WithFields(logrus.Fields{"kernel": kernel, "sha256": r.KernelSHA256}).Info("unikernel built")
	return r, receipt.Write(o.BuildDir, ReceiptName, r)
}

// TLSDir is where the certificate goes inside the Mirage project;
// config.ml crunches it into the kernel (mirage-skeleton's
// static_website_tls reads tls/server.pem and tls/server.key the same way).
const TLSDir = "tls"

// placeTLS writes what config.ml crunches from tls/: the chain and key
// (owner only), the names (domain first) and the HSTS max-age. With https
// off it leaves only a note, so no stale key is built in and the kernel
// serves plain HTTP.
func placeTLS(mirageDir string, t *cert.TLS) error {
	dir := filepath.Join(mirageDir, TLSDir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("unikernel: removing %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("unikernel: %w", err)
	}
	if t == nil {
		return receipt.WriteFileAtomic(filepath.Join(dir, "off"), []byte("https is off: the kernel serves plain HTTP\n"), 0o644)
	}
	files := map[string][]byte{
		"names": []byte(strings.Join(append([]string{t.Domain}, t.Aliases...), "\n") + "\n"),
		"hsts":  []byte(fmt.Sprintf("%d\n", t.HSTSMaxAge)),
	}
	for src, dst := range map[string]string{t.ChainFile: "server.pem", t.KeyFile: "server.key"} {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("unikernel: reading %s: %w; run `mage cert`", src, err)
		}
		files[dst] = b
	}
	for name, b := range files {
		if err := receipt.WriteFileAtomic(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("unikernel: %w", err)
		}
	}
	return nil
}

// noUnikernel records that there is no kernel: the receipt says so, and the
// Image step's host layout serves the site itself.
func noUnikernel(o Options, built *cert.Receipt) (*Receipt, error) {
	r := &Receipt{
		Target:  NoTarget,
		BuildID: built.BuildID,
		Commit:  built.Commit,
		Inputs:  map[string]string{"target": NoTarget},
		TLS:     built.TLS(),
	}
	o.Log.Info("mirage_target: none: no unikernel to build; the host image serves the site with its built-in server")
	return r, receipt.Write(o.BuildDir, ReceiptName, r)
}

// usePrebuilt checks and records a kernel built elsewhere, which holds
// whatever site it was built with.
func usePrebuilt(o Options, built *cert.Receipt) (*Receipt, error) {
	abs, err := filepath.Abs(o.Prebuilt)
	if err != nil {
		return nil, fmt.Errorf("unikernel: UNIKERNEL=%s: %w", o.Prebuilt, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case err != nil:
		return nil, fmt.Errorf("unikernel: UNIKERNEL=%s cannot be used: %w; point it at a kernel file, or unset it to build with mirage", o.Prebuilt, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("unikernel: UNIKERNEL=%s is not a regular file; point it at the kernel (e.g. _mirage/dist/blog.virtio)", o.Prebuilt)
	case fi.Size() == 0:
		return nil, fmt.Errorf("unikernel: UNIKERNEL=%s is empty; point it at a built kernel", o.Prebuilt)
	}
	sum, err := receipt.HashFile(abs)
	if err != nil {
		return nil, fmt.Errorf("unikernel: %w", err)
	}
	// A Mirage kernel carries its site crunched in verbatim: build-id.txt
	// and the build-id meta tag of every page. A kernel whose bytes lack the
	// site's build id serves some other build.
	siteID := built.BuildID
	carries, err := fileContains(abs, siteID)
	if err != nil {
		return nil, fmt.Errorf("unikernel: reading UNIKERNEL=%s: %w", o.Prebuilt, err)
	}
	r := &Receipt{
		Kernel: abs, KernelSHA256: sum, Target: "prebuilt", Prebuilt: true,
		Commit: built.Commit,
		Inputs: map[string]string{"kernel": sum}, TLS: built.TLS(),
	}
	log := o.Log.WithFields(logrus.Fields{"kernel": abs, "sha256": sum})
	if carries {
		r.BuildID = siteID
	} else {
		err := fmt.Errorf("unikernel: the kernel UNIKERNEL=%s does not carry the site's build %s (%s holds no such id), so deploying it would not publish the site as built: "+
			"build the kernel from this site instead (unset UNIKERNEL to build it with mirage), or build it from this _site elsewhere and point UNIKERNEL at that kernel, "+
			"or set mirage_target: none so the host image serves _site itself", o.Prebuilt, orNone(siteID), filepath.Base(abs))
		if o.Publish {
			return nil, err
		}
		log.Warn(err.Error() + "; fine for a local image, a deploy stops here")
	}
	log.WithField("build_id", r.BuildID).Info("using the prebuilt kernel named by UNIKERNEL; skipping the Mirage build")
	return r, receipt.Write(o.BuildDir, ReceiptName, r)
}

func orNone(id string) string {
	if id == "" {
		return "(none: _site has no build-id.txt; run `mage site`)"
	}
	return id
}

// fileContains reports whether the file holds needle; false for an empty needle.
func fileContains(path, needle string) (bool, error) {
	if needle == "" {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return bytes.Contains(data, []byte(needle)), nil
}

func upToDate(buildDir string, inputs map[string]string) (*Receipt, bool) {
	var prev Receipt
	if ok, err := receipt.Read(buildDir, ReceiptName, &prev); !ok || err != nil || prev.Prebuilt {
		return nil, false
	}
	if len(prev.Inputs) != len(inputs) {
		return nil, false
	}
	for k, v := range inputs {
		if prev.Inputs[k] != v {
			return nil, false
		}
	}
	if sum, err := receipt.HashFile(prev.Kernel); err != nil || sum != prev.KernelSHA256 {
		return nil, false
	}
	return &prev, true
}

// generated are what mirage configure and the build write into the project;
// they are outputs, not sources.
var generated = map[string]bool{
	HtdocsDir: true, TLSDir: true, "_build": true, "dist": true, "mirage": true, "Makefile": true,
	"dune": true, "dune.build": true, "dune.config": true, "dune-project": true, "dune-workspace": true,
	"duniverse": true, ".mirage.config": true, DuneHtdocs: true,
}

// hashSources hashes the Mirage project's own files (config.ml, the OCaml
// modules, opam constraints), leaving out what the build generates.
func hashSources(dir string) (string, error) {
	var t receipt.Tree
	err := filepath.WalkDir(dir, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, abs)
		if rel == "." {
			return nil
		}
		top := strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]
		if generated[top] || strings.HasSuffix(top, ".opam") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return t.AddFile(rel, abs)
	})
	if err != nil {
		return "", fmt.Errorf("unikernel: reading the Mirage project %s: %w", dir, err)
	}
	if t.Len() == 0 {
		return "", fmt.Errorf("unikernel: %s holds no Mirage project (no config.ml); restore _mirage/ from the repository", dir)
	}
	return t.Sum(), nil
}

// findKernel finds the one kernel mirage built: Mirage 4 writes
// dist/<name>.<target>, and for the unix target dist/<name>, an executable
// beside the dune file it installs with (Functoria's generate_dune `Dist).
func findKernel(dir, target string) (string, error) {
	dist := filepath.Join(dir, "dist")
	entries, err := os.ReadDir(dist)
	if err != nil {
		return "", fmt.Errorf("unikernel: the build left no %s: %w; check the make build output above", dist, err)
	}
	var found []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if target == UnixTarget {
			info, err := e.Info()
			if err == nil && !strings.Contains(e.Name(), ".") && e.Name() != "dune" && info.Mode()&0o111 != 0 {
				found = append(found, filepath.Join(dist, e.Name()))
			}
		} else if strings.HasSuffix(e.Name(), "."+target) {
			found = append(found, filepath.Join(dist, e.Name()))
		}
	}
	sort.Strings(found)
	switch len(found) {
	case 0:
		return "", fmt.Errorf("unikernel: no *.%s kernel in %s after the build; check the make build output above", target, dist)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("unikernel: several kernels in %s (%s); remove the stale ones and build again", dist, strings.Join(found, ", "))
	}
}

// syncDir replaces dst with a copy of src.
func syncDir(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, abs)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return receipt.CopyFile(abs, target)
		default:
			return nil // crunch takes regular files only
		}
	})
}
