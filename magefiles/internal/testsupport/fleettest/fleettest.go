// Package fleettest holds what the tests of the AWS-side steps share: a
// configuration for a unique site, builds baked by the real Bake from small
// images, and counts of what of a site exists. Test-only.
package fleettest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"
	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/awsharness"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// Config is a configuration for a site no other test shares, rooted in a
// temporary directory, with health_url aimed at the build server.
func Config(t testing.TB, domain string, builds *awsharness.BuildServer) *config.Config {
	t.Helper()
	c := &config.Config{
		Root:          t.TempDir(),
		Region:        awsharness.Region,
		Site:          awsharness.UniqueName("site"),
		Domain:        domain,
		InstanceType:  "t3.micro",
		Boot:          config.BootUEFI,
		TTL:           60,
		HealthURL:     config.DefaultHealthURL,
		HealthTimeout: 5 * time.Second,
		KeepImages:    3,
		Grace:         2 * time.Minute,
		LeaseWait:     30 * time.Second,
		Source:        map[string]string{},
	}
	if builds != nil {
		c.HealthURL = builds.HealthURL()
	}
	if err := os.MkdirAll(c.BuildDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

// Build is one baked build of the site.
type Build struct {
	BuildID     string
	ImageDigest string
	ImageID     string
	SnapshotID  string
}

// imageSize is the test images' size: a few 512 KiB blocks, one of data.
const imageSize = 8 << 20

// WriteImage stands in for the Image step: a small sparse disk image whose
// one block of data is unique to the site and build, and its receipt.
func WriteImage(t testing.TB, c *config.Config, buildID string) {
	t.Helper()
	path := filepath.Join(c.BuildDir(), "disk-"+buildID+".img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// What the stand-in for booted instances serves is read from this block.
	if _, err := f.WriteAt(append(awsharness.TestImageData(buildID), []byte(c.Site+"\n")...), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(imageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := sparse.DigestPath(path, imageSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := receipt.Write(c.BuildDir(), image.ReceiptName, &image.Receipt{
		Path: path, Layout: config.BootUEFI, SizeBytes: imageSize, Digest: d.Hex,
		BuildID: buildID, Commit: "c0ffee" + buildID, Boot: layout.HVMUEFI,
	}); err != nil {
		t.Fatal(err)
	}
}

// Bake bakes build for the site with the real Bake from WriteImage's image;
// bake.Bake writes _build/bake.json. The same build baked again is the same
// image, and Bake reuses its AMI.
func Bake(t testing.TB, h *awsharness.Harness, c *config.Config, buildID string) Build {
	t.Helper()
	WriteImage(t, c, buildID)
	l, _ := test.NewNullLogger()
	r, err := bake.Bake(context.Background(), bake.Options{Config: c, Log: l.WithField("step", "bake"), WaitDelay: 5 * time.Millisecond, RetryBase: time.Millisecond})
	if err != nil {
		t.Fatalf("fleettest: baking build %s: %v", buildID, err)
	}
	time.Sleep(2 * time.Millisecond) // AMI creation dates have millisecond resolution: keep bakes ordered
	return Build{BuildID: buildID, ImageDigest: r.ImageDigest, ImageID: r.ImageID, SnapshotID: r.SnapshotID}
}

// WriteBakeReceipt writes _build/bake.json as Bake does for build b.
func WriteBakeReceipt(t testing.TB, c *config.Config, b Build) {
	t.Helper()
	if err := receipt.Write(c.BuildDir(), bake.ReceiptName, &bake.Receipt{
		ImageID: b.ImageID, SnapshotID: b.SnapshotID, ImageDigest: b.ImageDigest, BuildID: b.BuildID, Commit: "c0ffee" + b.BuildID,
	}); err != nil {
		t.Fatal(err)
	}
}

// RemoveReceipts deletes _build/*.json: state lives in AWS, and a run on a
// fresh machine must still find it.
func RemoveReceipts(t testing.TB, c *config.Config, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.Remove(filepath.Join(c.BuildDir(), n+".json")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// Addresses lists the allocation ids of the site's Elastic IPs.
func Addresses(h *awsharness.Harness, site string) []string {
	var ids []string
	for _, a := range h.Model.AddressesTagged(fleet.TagSite, site) {
		ids = append(ids, a.AllocationID)
	}
	return ids
}

// RecordChanges lists the names of the record sets changed in the zone of
// domain since the test began, as "ACTION name TYPE".
func RecordChanges(h *awsharness.Harness) []string {
	var out []string
	for _, c := range h.Model.Changes() {
		out = append(out, c.Action+" "+c.Set.Name+" "+c.Set.Type)
	}
	return out
}

// Leftovers counts what of the site still exists in the emulator:
// instances not terminated, AMIs, snapshots.
func Leftovers(t testing.TB, h *awsharness.Harness, site string) (instances, amis, snapshots []string) {
	t.Helper()
	insts, err := h.Model.InstancesTagged(context.Background(), fleet.TagSite, site)
	if err != nil {
		t.Fatal(err)
	}
	return insts, h.Model.ImagesTagged(fleet.TagSite, site), h.Model.SnapshotsTagged(fleet.TagSite, site)
}
