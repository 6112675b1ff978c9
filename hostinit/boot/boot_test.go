package boot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/lib/modules/6.1.0/kernel/drivers/net/virtio_net.ko":      "virtio_net",
		"/lib/modules/6.1.0/kernel/drivers/net/xen-netfront.ko.xz": "xen-netfront",
		"ena.ko": "ena",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestLoadModulesReportsEachFailure runs without privileges or modules: every
// load fails, each is reported, and none stops the others.
func TestLoadModulesReportsEachFailure(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.ko")
	os.WriteFile(junk, []byte("not a module"), 0o644)
	res := LoadModules([]string{filepath.Join(dir, "missing.ko"), junk})
	if len(res) != 2 {
		t.Fatalf("%d results for 2 modules", len(res))
	}
	for _, r := range res {
		if r.Err == nil {
			t.Errorf("%s loaded?", r.Path)
		}
	}
}
