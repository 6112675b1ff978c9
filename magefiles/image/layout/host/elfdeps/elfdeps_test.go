package elfdeps

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// lddLine is one line of glibc's ldd: "name => path (addr)", "name => not
// found", or the interpreter "/path (addr)".
var lddLine = regexp.MustCompile(`^\s*(\S+)(?: => (\S+|not found))?(?: \(0x[0-9a-f]+\))?$`)

// ldd asks glibc's loader itself (ldd runs it with LD_TRACE_LOADED_OBJECTS)
// what program needs: name → path, "not found" for a missing one, and the
// interpreter under "".
func ldd(t *testing.T, program string) map[string]string {
	t.Helper()
	cmd := exec.Command(testtool.Need(t, "ldd", "libc-bin"), program)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH=") // the same search as Resolve's System
	out, _ := cmd.CombinedOutput()                     // ldd exits 1 when a library is not found
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := lddLine.FindStringSubmatch(l)
		switch {
		case m == nil:
			t.Fatalf("ldd %s: unexpected line %q in\n%s", program, l, out)
		case strings.HasPrefix(m[1], "linux-vdso"):
		case m[2] == "" && filepath.IsAbs(m[1]):
			got[""] = m[1]
		default:
			got[m[1]] = m[2]
		}
	}
	return got
}

// resolved is Resolve's answer in ldd's terms.
func resolved(d *Deps) map[string]string {
	got := map[string]string{}
	if d.Interp != nil {
		got[""] = d.Interp.Path
	}
	for _, l := range d.Libs {
		got[l.Name] = l.Path
	}
	return got
}

func system(t *testing.T) Search {
	t.Helper()
	s, err := System(os.DirFS("/"), elf.EM_X86_64)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAgreesWithTheLoader resolves programs the test machine has (from
// packages .ci/install installs) and compares with what glibc's own loader
// reports for them.
func TestAgreesWithTheLoader(t *testing.T) {
	programs := []string{testtool.Need(t, "qemu-img", "qemu-utils"), testtool.Need(t, "qemu-system-x86_64", "qemu-system-x86"), testtool.Need(t, "cpio", "cpio")}
	s := system(t)
	for _, p := range programs {
		p, _ = filepath.EvalSymlinks(p)
		d, err := Resolve(os.DirFS("/"), p, s)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		got, want := resolved(d), ldd(t, p)
		if len(got) != len(want) {
			t.Errorf("%s: %d files, ldd lists %d:\n got %v\nwant %v", p, len(got), len(want), got, want)
		}
		for name, path := range want {
			if got[name] != path {
				t.Errorf("%s: %q resolved to %q; the loader uses %q", p, name, got[name], path)
			}
		}
	}
}

// cc runs gcc in dir.
func cc(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(testtool.Need(t, "gcc", "gcc"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runPathTree builds, with gcc, lib/libb.so, lib/liba.so needing libb.so
// (liba2.so: the same, with its own RUNPATH $ORIGIN), and programs in bin/
// needing liba.so through the run paths of the ld(1) options given.
func runPathTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.c"), "int b(void) { return 0; }\n")
	writeFile(t, filepath.Join(dir, "a.c"), "int b(void);\nint a(void) { return b(); }\n")
	writeFile(t, filepath.Join(dir, "main.c"), "int a(void);\nint main(void) { return a(); }\n")
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	cc(t, dir, "-shared", "-fPIC", "-o", "lib/libb.so", "-Wl,-soname,libb.so", "b.c")
	cc(t, dir, "-shared", "-fPIC", "-o", "lib/liba.so", "-Wl,-soname,liba.so", "a.c", "-Llib", "-lb")
	cc(t, dir, "-shared", "-fPIC", "-o", "lib/liba2.so", "-Wl,-soname,liba2.so", "a.c", "-Llib", "-lb", "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags")
	link := func(name, lib string, flags ...string) {
		cc(t, dir, append([]string{"-o", "bin/" + name, "main.c", "-Llib", "-l" + lib, "-Wl,-rpath-link," + filepath.Join(dir, "lib")}, flags...)...)
	}
	// DT_RUNPATH: searched for the program's own needs only.
	link("runpath", "a", "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags")
	// DT_RPATH: inherited by the libraries the program loads.
	link("rpath", "a", "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags")
	// DT_RUNPATH, and the library's own.
	link("runpath2", "a2", "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags")
	return dir
}

// TestRunPathsAsTheLoaderSearchesThem: RPATH is inherited, RUNPATH is not,
// $ORIGIN is the object's own directory — checked against ldd.
func TestRunPathsAsTheLoaderSearchesThem(t *testing.T) {
	dir := runPathTree(t)
	s := system(t)
	for _, name := range []string{"runpath", "rpath", "runpath2"} {
		p := filepath.Join(dir, "bin", name)
		want := ldd(t, p)
		d, err := Resolve(os.DirFS("/"), p, s)
		if want["libb.so"] == "not found" {
			var nf *NotFoundError
			if !errors.As(err, &nf) || nf.Name != "libb.so" || !strings.HasSuffix(nf.NeededBy, "/lib/liba.so") {
				t.Errorf("%s: the loader does not find libb.so (RUNPATH is not inherited); Resolve: %v", name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v (ldd: %v)", name, err, want)
			continue
		}
		got := resolved(d)
		for n, path := range want {
			if filepath.Clean(got[n]) != filepath.Clean(path) {
				t.Errorf("%s: %q resolved to %q; the loader uses %q", name, n, got[n], path)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: got %v; ldd %v", name, got, want)
		}
	}
	// The case the loader refuses must be one: otherwise the test above
	// checks nothing about inheritance.
	if ldd(t, filepath.Join(dir, "bin", "runpath"))["libb.so"] != "not found" || ldd(t, filepath.Join(dir, "bin", "rpath"))["libb.so"] == "not found" {
		t.Error("ldd does not show RPATH inherited and RUNPATH not: the fixture is wrong")
	}
}

func TestStaticProgramNeedsNothing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.c"), "int main(void) { return 0; }\n")
	cc(t, dir, "-static", "-o", "static", "main.c")
	d, err := Resolve(os.DirFS("/"), filepath.Join(dir, "static"), system(t))
	if err != nil || d.Interp != nil || len(d.Libs) != 0 || len(d.Files()) != 0 {
		t.Errorf("a static program: %+v, %v; want nothing needed", d, err)
	}
}

// mapFS holds real ELF files built here at chosen paths.
func mapFS(t *testing.T, files map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	for at, from := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		m[strings.TrimPrefix(at, "/")] = &fstest.MapFile{Data: b, Mode: 0o755}
	}
	return m
}

// withMachine rewrites an ELF file's e_machine.
func withMachine(t *testing.T, fsys fstest.MapFS, at string, m elf.Machine) {
	t.Helper()
	f := fsys[strings.TrimPrefix(at, "/")]
	b := slices.Clone(f.Data)
	binary.LittleEndian.PutUint16(b[18:], uint16(m))
	fsys[strings.TrimPrefix(at, "/")] = &fstest.MapFile{Data: b, Mode: f.Mode}
}

// TestSearchOrderAndWrongMachines: LD_LIBRARY_PATH before the cache before
// the defaults; a library of another machine on the way is passed over, as
// the loader passes it over, and named when nothing else is found; the
// interpreter must be there; DF_1_NODEFLIB keeps the cache and defaults out.
func TestSearchOrderAndWrongMachines(t *testing.T) {
	dir := runPathTree(t)
	cc(t, dir, "-o", "bin/plain", "main.c", "-Llib", "-la", "-Wl,-rpath-link,"+filepath.Join(dir, "lib"))
	// libnd.so gets DF_1_NODEFLIB below: GNU ld 2.40 ignores -z nodeflib.
	cc(t, dir, "-shared", "-fPIC", "-o", "lib/libnd.so", "-Wl,-soname,libnd.so", "a.c", "-Llib", "-lb", "-Wl,-z,now")
	cc(t, dir, "-o", "bin/nodeflib", "main.c", "-Llib", "-lnd", "-Wl,-rpath-link,"+filepath.Join(dir, "lib"))
	plain, err := elf.Open(filepath.Join(dir, "bin", "plain"))
	if err != nil {
		t.Fatal(err)
	}
	interp, _ := interpreter(plain)
	plain.Close()
	libc := ldd(t, filepath.Join(dir, "bin", "plain"))["libc.so.6"]
	lib := func(n string) string { return filepath.Join(dir, "lib", n) }

	fsys := mapFS(t, map[string]string{
		"/bin/plain": filepath.Join(dir, "bin", "plain"), "/bin/nodeflib": filepath.Join(dir, "bin", "nodeflib"),
		interp:         interp,
		"/env/liba.so": lib("liba.so"), "/cache/liba.so": lib("liba.so"),
		"/cache/libb.so": lib("libb.so"), "/default/libb.so": lib("libb.so"),
		"/default/libc.so.6": libc, "/env/libnd.so": lib("libnd.so"),
	})
	withMachine(t, fsys, "/env/liba.so", elf.EM_AARCH64)
	withNodeflib(t, fsys, "/env/libnd.so")
	s := Search{LibraryPath: []string{"/env"}, CacheDirs: []string{"/cache"}, DefaultDirs: []string{"/default"}}
	d, err := Resolve(fsys, "/bin/plain", s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"": interp, "liba.so": "/cache/liba.so", "libb.so": "/cache/libb.so", "libc.so.6": "/default/libc.so.6"}
	if got := resolved(d); !maps(got, want) {
		t.Errorf("got %v; want %v (the aarch64 liba.so in LD_LIBRARY_PATH passed over)", got, want)
	}
	if i := slices.IndexFunc(d.Libs, func(f File) bool { return f.Name == "libb.so" }); i < 0 || d.Libs[i].NeededBy != "/cache/liba.so" {
		t.Errorf("libb.so not listed as needed by /cache/liba.so: %+v", d.Libs)
	}

	delete(fsys, "cache/liba.so")
	_, err = Resolve(fsys, "/bin/plain", s)
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Name != "liba.so" || !slices.Equal(nf.Searched, []string{"/env", "/cache", "/default"}) ||
		!strings.Contains(err.Error(), "/env/liba.so: ELFCLASS64 ELFDATA2LSB EM_AARCH64, not ELFCLASS64 ELFDATA2LSB EM_X86_64") {
		t.Errorf("error %v; want liba.so not found in /env, /cache, /default, the aarch64 one named", err)
	}

	fsys["cache/liba.so"] = fsys["env/liba.so"]
	withMachine(t, fsys, "/cache/liba.so", elf.EM_X86_64)
	delete(fsys, "cache/libb.so")
	if d, err := Resolve(fsys, "/bin/plain", s); err != nil || resolved(d)["libb.so"] != "/default/libb.so" {
		t.Errorf("libb.so only in the default directory: %v, %v", d, err)
	}
	// libnd.so says DF_1_NODEFLIB: what it needs is looked for in its run
	// paths and LD_LIBRARY_PATH only.
	if _, err := Resolve(fsys, "/bin/nodeflib", s); !errors.As(err, &nf) || nf.Name != "libb.so" || nf.NeededBy != "/env/libnd.so" || !slices.Equal(nf.Searched, []string{"/env"}) {
		t.Errorf("DF_1_NODEFLIB: error %v; want libb.so, needed by /env/libnd.so, looked for in /env only", err)
	}
	fsys["env/libb.so"] = fsys["default/libb.so"]
	if _, err := Resolve(fsys, "/bin/nodeflib", s); err != nil {
		t.Errorf("DF_1_NODEFLIB with libb.so in LD_LIBRARY_PATH: %v", err)
	}

	delete(fsys, strings.TrimPrefix(interp, "/"))
	if _, err := Resolve(fsys, "/bin/plain", s); !errors.As(err, &nf) || !nf.Interp || !strings.Contains(err.Error(), "the ELF interpreter "+interp) {
		t.Errorf("no interpreter: error %v", err)
	}
}

// withNodeflib sets DF_1_NODEFLIB in the DT_FLAGS_1 entry of an ELF64
// little-endian file's dynamic section (-z now gives it one).
func withNodeflib(t *testing.T, fsys fstest.MapFS, at string) {
	t.Helper()
	mf := fsys[strings.TrimPrefix(at, "/")]
	b := slices.Clone(mf.Data)
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	dyn := f.Section(".dynamic")
	for off := dyn.Offset; off+16 <= dyn.Offset+dyn.Size; off += 16 {
		if elf.DynTag(binary.LittleEndian.Uint64(b[off:])) == elf.DT_FLAGS_1 {
			v := binary.LittleEndian.Uint64(b[off+8:])
			binary.LittleEndian.PutUint64(b[off+8:], v|uint64(elf.DF_1_NODEFLIB))
			fsys[strings.TrimPrefix(at, "/")] = &fstest.MapFile{Data: b, Mode: mf.Mode}
			return
		}
	}
	t.Fatalf("%s has no DT_FLAGS_1", at)
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestTokensOtherThanOriginAreRefused(t *testing.T) {
	dir := runPathTree(t)
	cc(t, dir, "-o", "bin/lib", "main.c", "-Llib", "-la", "-Wl,-rpath-link,"+filepath.Join(dir, "lib"), "-Wl,-rpath,/opt/$LIB", "-Wl,--enable-new-dtags")
	_, err := Resolve(os.DirFS("/"), filepath.Join(dir, "bin", "lib"), Search{})
	if err == nil || !strings.Contains(err.Error(), `"/opt/$LIB"`) || !strings.Contains(err.Error(), "rebuild it without one") {
		t.Errorf("error %v", err)
	}
}

func TestParseConf(t *testing.T) {
	fsys := fstest.MapFS{
		"etc/ld.so.conf":                    {Data: []byte("# the loader's directories\ninclude /etc/ld.so.conf.d/*.conf\n/opt/first  # trailing comment\nhwcap 0 nosegneg\ninclude local/*.conf\n")},
		"etc/ld.so.conf.d/b-multiarch.conf": {Data: []byte("/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n")},
		"etc/ld.so.conf.d/a-libc.conf":      {Data: []byte("/usr/local/lib\n")},
		"etc/ld.so.conf.d/notes.txt":        {Data: []byte("/not/included\n")},
		"etc/local/x.conf":                  {Data: []byte("/opt/x/lib,/opt/y/lib:/opt/z/lib=libc6\n/usr/local/lib\n")},
	}
	got, err := ParseConf(fsys, "/etc/ld.so.conf")
	want := []string{"/usr/local/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/opt/first", "/opt/x/lib", "/opt/y/lib", "/opt/z/lib"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseConf = %q, %v\nwant %q", got, err, want)
	}
	if got, err := ParseConf(fstest.MapFS{}, "/etc/ld.so.conf"); got != nil || err != nil {
		t.Errorf("no ld.so.conf: %q, %v; want no directories", got, err)
	}
	loop := fstest.MapFS{"etc/ld.so.conf": {Data: []byte("include /etc/ld.so.conf\n")}}
	if _, err := ParseConf(loop, "/etc/ld.so.conf"); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("an ld.so.conf including itself: %v", err)
	}
}

// TestThisMachinesConf reads the real /etc/ld.so.conf: on Debian its include
// names the multiarch directory glibc's libraries are in.
func TestThisMachinesConf(t *testing.T) {
	if _, err := os.Stat("/etc/ld.so.conf"); err != nil {
		testtool.Missing(t, "no /etc/ld.so.conf on this machine (libc-bin)")
	}
	dirs, err := ParseConf(os.DirFS("/"), "/etc/ld.so.conf")
	if err != nil {
		t.Fatal(err)
	}
	libc := ldd(t, testtool.Need(t, "qemu-img", "qemu-utils"))["libc.so.6"]
	if !slices.Contains(append(dirs, DefaultDirs(elf.EM_X86_64)...), filepath.Dir(libc)) {
		t.Errorf("libc.so.6 is in %s, which neither ld.so.conf (%v) nor the defaults name", filepath.Dir(libc), dirs)
	}
}
