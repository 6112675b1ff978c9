package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// TestHostImageWithoutMirage is a newcomer without a Mirage toolchain (and
// without AWS, so https: false, the documented local rehearsal): the
// default settings (boot: host, mirage_target: spt) stop at the Unikernel
// step naming both ways out; with mirage_target: none, `mage image` writes
// the host image that serves _site itself.
func TestHostImageWithoutMirage(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	dir := freshClone(t)
	noMirage := []string{"PATH=" + filepath.Dir(goBinary(t)) + ":/usr/bin:/bin:/usr/sbin:/sbin", "DEPLOY_HOST_KERNEL=" + kernel, "DEPLOY_HTTPS=false"}

	out, err := mage(t, dir, noMirage, "unikernel")
	if err == nil {
		t.Fatalf("mage unikernel succeeded without mirage:\n%s", out)
	}
	for _, want := range []string{"mirage not found on PATH", "opam install", "mirage_target: none", "DEPLOY_MIRAGE_TARGET=none"} {
		if !strings.Contains(out, want) {
			t.Errorf("the missing-mirage error lacks %q:\n%s", want, out)
		}
	}

	out, err = mage(t, dir, append(noMirage, "DEPLOY_MIRAGE_TARGET=none"), "image")
	if err != nil {
		t.Fatalf("mage image with mirage_target: none: %v\n%s", err, out)
	}
	var uk struct {
		Kernel, Target string
	}
	readJSON(t, filepath.Join(dir, "_build", "unikernel.json"), &uk)
	if uk.Kernel != "" || uk.Target != "none" {
		t.Errorf("unikernel receipt %+v; want no kernel, target none", uk)
	}
	var img struct {
		Layout string `json:"layout"`
		Path   string `json:"path"`
		Boot   struct {
			VirtualizationType string `json:"virtualization_type"`
			BootMode           string `json:"boot_mode"`
			EnaSupport         bool   `json:"ena_support"`
		} `json:"boot"`
		Inputs map[string]string `json:"inputs"`
	}
	readJSON(t, filepath.Join(dir, "_build", "image.json"), &img)
	if img.Layout != "host" || img.Boot.VirtualizationType != "hvm" || img.Boot.BootMode != "uefi" || !img.Boot.EnaSupport {
		t.Errorf("image receipt %+v; want a host image registered hvm, uefi, ENA", img)
	}
	if img.Inputs["layout.site"] == "" || !strings.HasPrefix(img.Inputs["layout.kernel_release"], "6.") {
		t.Errorf("the image's inputs do not record the site and the kernel: %v", img.Inputs)
	}
	if !strings.Contains(out, "initramfs built") || !strings.Contains(out, "payload=static") {
		t.Errorf("mage image did not say it built the static payload:\n%s", out)
	}
}

func goBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
