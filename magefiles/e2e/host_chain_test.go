package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/fleettest"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
	"github.com/unikernel-blog/blog/magefiles/site"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// TestDeployHostImage runs the whole pipeline unchanged with boot: host and
// no Mirage toolchain (mirage_target: none): this repository's blog built by
// jekyll, the host image written by the Image step around Debian's cloud
// kernel, baked through the EBS direct APIs, launched behind the health gate
// and swapped in; then an unchanged redeploy does nothing.
func TestDeployHostImage(t *testing.T) {
	kernel := hostkernel.Root(t)
	testtool.Need(t, "jekyll", "jekyll")
	testtool.Need(t, "grub-mkstandalone", "grub-efi-amd64-bin")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	e := fleettest.NewEnv(t, false, awsharness.Options{})
	e.C.Root = testtool.CopyRepo(t, repo)
	e.C.Boot, e.C.MirageTarget, e.C.UploadParallel = config.BootHost, unikernel.NoTarget, 16
	ctx := context.Background()

	build := func() *image.Receipt {
		t.Helper()
		if _, err := site.Build(ctx, site.Options{Root: e.C.Root, Log: e.Log}); err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Issue(ctx, cert.Options{Config: e.C, Log: e.Log}); err != nil { // https off here: passes the build on
			t.Fatal(err)
		}
		if _, err := unikernel.Build(ctx, unikernel.Options{MirageDir: e.C.MirageDir(), SiteDir: e.C.SiteDir(), BuildDir: e.C.BuildDir(), Target: e.C.MirageTarget, Log: e.Log}); err != nil {
			t.Fatal(err)
		}
		ir, err := image.Build(ctx, image.Options{BuildDir: e.C.BuildDir(), Layout: e.C.Boot, Size: 1 << 30, SiteDir: e.C.SiteDir(),
			Settings: layout.Settings{HostKernel: kernel}, Log: e.Log})
		if err != nil {
			t.Fatal(err)
		}
		return ir
	}
	bakeAndDeploy := func() (*bake.Receipt, string) {
		t.Helper()
		br, err := bake.Bake(ctx, bake.Options{Config: e.C, Log: e.Log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lr, _ := e.MustDeploy()
		return br, lr.InstanceID
	}

	ir := build()
	if ir.Layout != config.BootHost || ir.BuildID == "" {
		t.Fatalf("image receipt %+v", ir)
	}
	br, instance := bakeAndDeploy()
	// The stand-in for the booted instance read the build from the image
	// itself: the ESP's initramfs, and the site's build-id.txt in it.
	e.WantLive(instance, ir.BuildID)
	ami, ok := e.H.Model.Image(br.ImageID)
	if !ok || ami.VirtualizationType != "hvm" || ami.BootMode != "uefi" || !ami.EnaSupport || ami.KernelID != "" {
		t.Fatalf("the host AMI is not registered for Nitro (hvm, uefi, ENA): %+v", ami)
	}
	// Only blocks holding data cross the network: about 18 MiB of the 1 GiB
	// (2048 blocks), in blocks its scattered extents touch.
	if br.BlocksUploaded < ir.DataBytes/(512<<10) || br.BlocksUploaded > 2048/20 {
		t.Errorf("uploaded %d of 2048 blocks for %d data bytes", br.BlocksUploaded, ir.DataBytes)
	}
	t.Logf("host image: %d data bytes, %d blocks uploaded", ir.DataBytes, br.BlocksUploaded)

	// An unchanged blog rebuilds to the same image, which deploys to nothing.
	if again := build(); again.Digest != ir.Digest {
		t.Fatalf("rebuilt host image differs: %s vs %s", again.Digest, ir.Digest)
	}
	e.H.Calls.Reset()
	before := len(e.H.Model.Changes())
	br2, instance2 := bakeAndDeploy()
	if !br2.Reused || instance2 != instance {
		t.Fatalf("redeploy: reused %v, instance %s (want %s)", br2.Reused, instance2, instance)
	}
	for _, op := range []string{"RunInstances", "RegisterImage", "TerminateInstances"} {
		if n := e.H.Calls.Count("ec2", op); n != 0 {
			t.Errorf("unchanged redeploy called ec2:%s %d times", op, n)
		}
	}
	for _, c := range fleettest.RecordChanges(e.H)[before:] {
		if !strings.Contains(c, fleet.LeaseName(e.C.Domain)) {
			t.Errorf("unchanged redeploy changed %s", c)
		}
	}
}
