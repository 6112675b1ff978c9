package swap_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host"
	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/internal/hostkernel"
	"github.com/unikernel-blog/blog/magefiles/internal/testtool"
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
	e := newEnv(t, false, awstest.Options{})
	e.c.Root = testtool.CopyRepo(t, repo)
	e.c.Boot, e.c.MirageTarget, e.c.UploadParallel = config.BootHost, unikernel.NoTarget, 16
	ctx := context.Background()

	build := func() *image.Receipt {
		t.Helper()
		if _, err := site.Build(ctx, site.Options{Root: e.c.Root, Log: e.log}); err != nil {
			t.Fatal(err)
		}
		if _, err := unikernel.Build(ctx, unikernel.Options{MirageDir: e.c.MirageDir(), SiteDir: e.c.SiteDir(), BuildDir: e.c.BuildDir(), Target: e.c.MirageTarget, Log: e.log}); err != nil {
			t.Fatal(err)
		}
		ir, err := image.Build(ctx, image.Options{BuildDir: e.c.BuildDir(), Layout: e.c.Boot, Size: 1 << 30, SiteDir: e.c.SiteDir(),
			Settings: map[string]string{host.SettingKernel: kernel}, Log: e.log})
		if err != nil {
			t.Fatal(err)
		}
		return ir
	}
	bakeAndDeploy := func() (*bake.Receipt, string) {
		t.Helper()
		br, err := bake.Bake(ctx, bake.Options{Config: e.c, Log: e.log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lr, _ := e.mustDeploy()
		return br, lr.InstanceID
	}

	ir := build()
	if ir.Layout != config.BootHost || ir.BuildID == "" {
		t.Fatalf("image receipt %+v", ir)
	}
	br, instance := bakeAndDeploy()
	e.wantRecordAt(instance)
	ami, ok := e.h.Shim.Image(br.ImageID)
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
	if again := build(); again.SHA256 != ir.SHA256 {
		t.Fatalf("rebuilt host image differs: %s vs %s", again.SHA256, ir.SHA256)
	}
	e.h.Calls.Reset()
	br2, instance2 := bakeAndDeploy()
	if !br2.Reused || instance2 != instance {
		t.Fatalf("redeploy: reused %v, instance %s (want %s)", br2.Reused, instance2, instance)
	}
	for _, op := range []string{"RunInstances", "RegisterImage", "TerminateInstances"} {
		if n := e.h.Calls.Count("ec2", op); n != 0 {
			t.Errorf("unchanged redeploy called ec2:%s %d times", op, n)
		}
	}
	if n := e.h.Calls.Count("route53", "ChangeResourceRecordSets"); n != 0 {
		t.Errorf("unchanged redeploy changed the record %d times", n)
	}
}
