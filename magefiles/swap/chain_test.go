package swap_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/internal/awstest"
	"github.com/unikernel-blog/blog/magefiles/launch/launchtest"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// writeImage stands in for the Image step: a small sparse disk image (one
// block of data) for build, and its receipt.
func writeImage(t *testing.T, e *env, build string) {
	t.Helper()
	path := filepath.Join(e.c.BuildDir(), "disk-"+build+".img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	_, _ = rand.Read(data)
	if _, err := f.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := receipt.HashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := receipt.Write(e.c.BuildDir(), image.ReceiptName, &image.Receipt{
		Path: path, Layout: "uefi", SizeBytes: 8 << 20, SHA256: sum, BuildID: build,
		Boot: image.BootSettings{VirtualizationType: "hvm", BootMode: "uefi", EnaSupport: true, RootDeviceName: "/dev/xvda"},
	}); err != nil {
		t.Fatal(err)
	}
}

// TestDeployThroughBake runs the chain as `mage deploy` does from the disk
// image on: the real Bake, then Launch and Swap. A redeploy of the same
// image uploads nothing, registers nothing, launches nothing and changes no
// record.
func TestDeployThroughBake(t *testing.T) {
	e := newEnv(t, false, awstest.Options{})
	e.c.UploadParallel = 4
	ctx := context.Background()
	deploy := func() (string, bool) {
		t.Helper()
		br, err := bake.Bake(ctx, bake.Options{Config: e.c, Log: e.log, WaitDelay: time.Millisecond, RetryBase: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lr, _ := e.mustDeploy()
		if lr.ImageID != br.ImageID {
			t.Fatalf("launched AMI %s, baked %s", lr.ImageID, br.ImageID)
		}
		return lr.InstanceID, br.Reused
	}

	writeImage(t, e, "build1")
	i1, _ := deploy()
	e.wantRecordAt(i1)
	writeImage(t, e, "build2")
	i2, _ := deploy()
	e.wantRecordAt(i2)
	e.wantInstances(i2)

	e.h.Calls.Reset()
	i3, reused := deploy()
	if !reused || i3 != i2 {
		t.Fatalf("redeploy: reused %v, instance %s (want %s)", reused, i3, i2)
	}
	for _, c := range []struct{ svc, op string }{
		{"ebs", "StartSnapshot"}, {"ebs", "PutSnapshotBlock"}, {"ec2", "RegisterImage"},
		{"ec2", "RunInstances"}, {"ec2", "TerminateInstances"}, {"route53", "ChangeResourceRecordSets"},
	} {
		if n := e.h.Calls.Count(c.svc, c.op); n != 0 {
			t.Errorf("unchanged redeploy called %s:%s %d times", c.svc, c.op, n)
		}
	}
	insts, amis, snaps := launchtest.Leftovers(t, e.h, e.c.Site)
	if len(insts) != 1 || len(amis) != 2 || len(snaps) != 2 {
		t.Fatalf("instances %v AMIs %v snapshots %v, want 1, 2, 2", insts, amis, snaps)
	}
}
