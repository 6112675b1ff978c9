package host_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// gcc compiles a test program in dir.
func gcc(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(testtool.Need(t, "gcc", "gcc"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// dynamicTender builds testdata/standin-spt-c, linked against Debian's
// libseccomp and glibc as the real solo5-spt is.
func dynamicTender(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat("/usr/include/seccomp.h"); err != nil {
		testtool.Missing(t, "no /usr/include/seccomp.h; install it with `apt-get install libseccomp-dev`")
	}
	src, err := filepath.Abs("testdata/standin-spt-c/standin-spt.c")
	if err != nil {
		t.Fatal(err)
	}
	gcc(t, dir, "-O2", "-Wall", "-Werror", "-o", "solo5-spt", src, "-lseccomp")
	return filepath.Join(dir, "solo5-spt")
}

// staticTender is a statically linked program standing in for a tender
// that needs nothing beside it.
func staticTender(t *testing.T, dir string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "main.c"), []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gcc(t, dir, "-static", "-o", "solo5-spt", "main.c")
	return filepath.Join(dir, "solo5-spt")
}

// lddOf is what glibc's loader itself loads for program (ldd runs it with
// LD_TRACE_LOADED_OBJECTS): library name → path; the interpreter under "".
func lddOf(t *testing.T, program string) map[string]string {
	t.Helper()
	out, err := exec.Command(testtool.Need(t, "ldd", "libc-bin"), program).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", program, err)
	}
	got := map[string]string{}
	re := regexp.MustCompile(`^\s*(\S+)(?: => (\S+))? \(0x[0-9a-f]+\)$`)
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := re.FindStringSubmatch(l)
		switch {
		case m == nil:
			t.Fatalf("ldd %s: %q", program, l)
		case strings.HasPrefix(m[1], "linux-vdso"):
		case m[2] == "":
			got[""] = m[1]
		default:
			got[m[1]] = m[2]
		}
	}
	return got
}

// TestDynamicTenderCarriesItsLibraries: the spt initramfs holds a
// dynamically linked tender's interpreter at its PT_INTERP path and every
// library glibc's loader loads for it (as ldd reports, byte for byte), and
// the init is told the library directory.
func TestDynamicTenderCarriesItsLibraries(t *testing.T) {
	k := kernel(t)
	dir := t.TempDir()
	tender := dynamicTender(t, dir)
	uk := staticTender(t, t.TempDir()) // any ELF file stands in for the unikernel
	gz, cfg, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), Unikernel: uk, Tender: tender})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SPT.LibraryPath != host.TenderLibDir {
		t.Errorf("library path %q; want %s", cfg.SPT.LibraryPath, host.TenderLibDir)
	}
	loaded := lddOf(t, tender)
	if loaded["libseccomp.so.2"] == "" || loaded["libc.so.6"] == "" {
		t.Fatalf("the stand-in tender does not load libseccomp and libc: %v", loaded)
	}
	names := cpioList(t, gz, false)
	var libs []string
	for _, n := range names {
		if strings.HasPrefix(n, strings.TrimPrefix(host.TenderLibDir, "/")+"/") {
			libs = append(libs, path.Base(n))
		}
	}
	var want []string
	for name, from := range loaded {
		at := path.Join(host.TenderLibDir, name)
		if name == "" {
			at = from // the interpreter, at its PT_INTERP path
		} else {
			want = append(want, name)
		}
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if got := cpioExtract(t, gz, strings.TrimPrefix(at, "/")); !bytes.Equal(got, b) {
			t.Errorf("%s in the initramfs (%d bytes) is not this machine's %s (%d bytes)", at, len(got), from, len(b))
		}
	}
	slices.Sort(libs)
	slices.Sort(want)
	if !slices.Equal(libs, want) {
		t.Errorf("%s holds %v; the loader loads %v", host.TenderLibDir, libs, want)
	}
	for _, line := range cpioList(t, gz, true) {
		if strings.HasSuffix(line, " "+strings.TrimPrefix(loaded[""], "/")) && !strings.HasPrefix(line, "-rwxr-xr-x") {
			t.Errorf("the interpreter is not executable: %s", line)
		}
	}
}

func TestStaticTenderCarriesNothing(t *testing.T) {
	k := kernel(t)
	tender := staticTender(t, t.TempDir())
	gz, cfg, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), Unikernel: tender, Tender: tender})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SPT.LibraryPath != "" {
		t.Errorf("a static tender gets library path %q", cfg.SPT.LibraryPath)
	}
	for _, n := range cpioList(t, gz, false) {
		if strings.HasPrefix(n, "lib64") || strings.HasPrefix(n, strings.TrimPrefix(host.TenderLibDir, "/")) {
			t.Errorf("a static tender's initramfs holds %s", n)
		}
	}
}

// TestTenderThatCannotStartIsRefused: the tender is refused, with why, when
// the build machine lacks a library it needs, when it is not an ELF
// program (a script's interpreter is not in the image), or when it is for
// another machine than the image's x86_64 Linux.
func TestTenderThatCannotStartIsRefused(t *testing.T) {
	k := kernel(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gone.c"), []byte("int gone(void) { return 0; }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.c"), []byte("int gone(void);\nint main(void) { return gone(); }\n"), 0o644)
	gcc(t, dir, "-shared", "-fPIC", "-o", "libgone.so", "-Wl,-soname,libgone.so", "gone.c")
	gcc(t, dir, "-o", "needs-gone", "main.c", "-L.", "-lgone")
	os.Remove(filepath.Join(dir, "libgone.so"))

	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\nexec true\n"), 0o755)

	arm := filepath.Join(dir, "arm")
	b, _ := os.ReadFile(staticTender(t, t.TempDir()))
	binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_AARCH64))
	os.WriteFile(arm, b, 0o755)

	uk := staticTender(t, t.TempDir())
	cases := map[string][]string{
		filepath.Join(dir, "needs-gone"): {"cannot start", "libgone.so, needed by " + filepath.Join(dir, "needs-gone"), "none of the directories the loader searches"},
		script:                           {"is not an ELF program", "deploy.solo5_spt"},
		arm:                              {"EM_AARCH64", "x86_64"},
	}
	for tender, wants := range cases {
		_, _, err := host.Initramfs(host.InitramfsOptions{Kernel: k, Init: theInit(t), Unikernel: uk, Tender: tender})
		for _, want := range wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v; want it to say %q", filepath.Base(tender), err, want)
			}
		}
	}
}

// TestImageWithoutTheTendersLibrariesIsRefused switches the feature off:
// without its interpreter and libraries beside it the dynamically linked
// tender could not start, and the Image step fails saying so instead of
// writing an image that cannot serve.
func TestImageWithoutTheTendersLibrariesIsRefused(t *testing.T) {
	kroot := hostkernel.Root(t)
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	dir := t.TempDir()
	tender := dynamicTender(t, dir)
	interp := lddOf(t, tender)[""]
	log, logs := testLog()
	buildDir := filepath.Join(dir, "_build")
	siteReceipt(t, buildDir, "feedc0de12345678")
	if _, err := unikernel.Build(context.Background(), unikernel.Options{BuildDir: buildDir, Prebuilt: staticTender(t, t.TempDir()), Log: log}); err != nil {
		t.Fatal(err)
	}
	opts := image.Options{BuildDir: buildDir, Layout: host.Name, Size: 128 << 20,
		Settings: layout.Settings{HostKernel: kroot, Solo5SPT: tender}, Log: log}

	restore := host.WithoutTenderDeps()
	_, err := image.Build(context.Background(), opts)
	restore()
	for _, want := range []string{"would not start in the host image", "the ELF interpreter " + interp, "is not there", "restarted forever"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v; want it to say %q", err, want)
		}
	}
	if imgs, _ := filepath.Glob(filepath.Join(buildDir, "*.img*")); len(imgs) != 0 {
		t.Errorf("a refused build left %v", imgs)
	}
	if _, err := os.Stat(filepath.Join(buildDir, image.ReceiptName+".json")); !os.IsNotExist(err) {
		t.Errorf("a refused build wrote a receipt (%v)", err)
	}

	// With the feature, the same inputs give an image.
	if _, err := image.Build(context.Background(), opts); err != nil {
		t.Fatalf("with the tender's libraries: %v\n%s", err, logs)
	}
}
