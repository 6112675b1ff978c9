//go:build mage

// The blog's build and deploy pipeline. Each target is one step and depends on
// the step before it:
//
//	Site → Cert → Unikernel → Image → Bake → Launch → Swap (Deploy is the whole chain)
//
// Everything that changes what runs in AWS holds the site's deploy lease.
//
// Targets only read the configuration and call the package that does the work.
// Settings live in the deploy: block of _config.yml; DEPLOY_<KEY> overrides any.
package main

//mage:multiline (keep the line breaks of these docs in mage -h)

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/magefile/mage/mg"

	"github.com/unikernel-blog/blog/magefiles/bake"
	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/check"
	"github.com/unikernel-blog/blog/magefiles/config"
	"github.com/unikernel-blog/blog/magefiles/deploy"
	"github.com/unikernel-blog/blog/magefiles/fleet"
	"github.com/unikernel-blog/blog/magefiles/image"
	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/launch"
	"github.com/unikernel-blog/blog/magefiles/logx"
	"github.com/unikernel-blog/blog/magefiles/policy"
	"github.com/unikernel-blog/blog/magefiles/preflight"
	"github.com/unikernel-blog/blog/magefiles/rollback"
	"github.com/unikernel-blog/blog/magefiles/site"
	"github.com/unikernel-blog/blog/magefiles/swap"
	"github.com/unikernel-blog/blog/magefiles/timeline"
	"github.com/unikernel-blog/blog/magefiles/unikernel"
)

// Default is what a bare `mage` does: build and preview nothing else.
var Default = Site

var (
	loadOnce sync.Once
	loaded   *config.Config
	loadErr  error
)

// cfg loads and validates the configuration once per invocation.
func cfg() (*config.Config, error) {
	loadOnce.Do(func() { loaded, loadErr = config.Load(".") })
	return loaded, loadErr
}

// publishing is set by the targets that ship to AWS (Bake and those after
// it) before their dependencies run: the Site step then builds the files of
// the HEAD commit and stops on anything a deploy must not publish, where
// `mage site` previews the working tree.
var publishing atomic.Bool

// deployTimeline is `mage deploy`'s timeline, set by Deploy before its
// dependencies run, so Site, Unikernel and Image record their phases in it;
// nil (recording nothing) for any other target.
var deployTimeline *timeline.Recorder

// forced reports FORCE=1 (or true): rebuild even when the inputs are unchanged.
func forced() bool {
	v := strings.ToLower(os.Getenv("FORCE"))
	return v == "1" || v == "true" || v == "yes"
}

// Site builds the blog with jekyll into _site and stamps it with a build id.
//
// Output: _site/ (with build-id.txt and a build-id meta tag on every page) and
// the receipt _build/site.json. The build id is a hash of the sources (posts,
// layouts, pages, _config.yml without its deploy: block), so it changes exactly
// when the published site can. Skipped when nothing changed; FORCE=1 rebuilds.
// The tooling (magefiles/, mage.go, go.mod, hostinit/, _mirage/, .ci/, …) is
// kept out of _site whatever exclude: says. Jekyll's errors and its warnings
// about front matter and Liquid fail the step, with file and line.
// `mage site` previews the working tree and names files git does not track;
// a deploy (bake, launch, swap, deploy) builds the files of the HEAD commit
// and stops on untracked or uncommitted sources, files over
// deploy.max_file_size and files that look like secrets.
// Environment: JEKYLL overrides the jekyll command; otherwise a blog with a
// Gemfile.lock builds with `bundle exec jekyll` when bundle is installed.
// To preview, open _site/index.html or run `mage serve`.
func Site(ctx context.Context) error {
	defer deployTimeline.Begin("site")()
	c, err := cfg()
	if err != nil {
		return err
	}
	log := logx.Step("site")
	r, err := site.Build(ctx, site.Options{
		Root: c.Root, Force: forced(), Jekyll: os.Getenv("JEKYLL"),
		Publish: publishing.Load(), MaxFileSize: c.MaxFileSize, Log: log,
	})
	if err != nil {
		return err
	}
	log.WithField("build_id", r.BuildID).Infof("site ready in %s; preview it with `mage serve` (live reload at http://localhost:4000)", r.SiteDir)
	return nil
}

// Serve previews the blog at http://localhost:4000 with live reload (jekyll serve --livereload).
//
// Runs until interrupted. Environment: JEKYLL overrides the jekyll command.
func Serve(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	return site.Serve(ctx, site.Options{Root: c.Root, Jekyll: os.Getenv("JEKYLL"), Log: logx.Step("serve")})
}

// Cert makes sure a certificate for deploy.domain and deploy.aliases is at hand (https: true).
//
// ACME (deploy.acme_directory, Let's Encrypt by default) with the DNS-01
// challenge in the names' Route53 zones; ECDSA P-256. The account key, chain
// and key live in SSM Parameter Store (SecureString) under /blog/<site>/tls
// and are read first: a new certificate is ordered only when none covers the
// names, it does not verify, or fewer than 30 days remain. A failed renewal
// with 7 days or more left is a warning; otherwise the step fails before
// anything is launched. Output: _build/cert/ (owner-only) and the receipt
// _build/cert.json. With https: false it only passes the site's build on.
// The certificate is found while Site builds: the two share nothing. An order
// (and everything it changes in AWS) holds the site's deploy lease, taken
// only when one is due and released before Bake takes it.
func Cert(ctx context.Context) error {
	mg.CtxDeps(ctx, Site, certificate) // side by side: the certificate needs nothing of the site
	c, err := cfg()
	if err != nil {
		return err
	}
	_, err = cert.Issue(ctx, cert.Options{Config: c, Log: logx.Step("cert"), Publish: publishing.Load(), Certified: certified})
	return err
}

// certified is what certificate found, for Cert.
var certified *cert.Receipt

// certificate is the part of Cert that needs nothing of the site (the
// certificate at hand: stored, ordered, or self-signed for a local build),
// run beside Site; Cert passes the site's build on with it.
func certificate(ctx context.Context) error {
	defer deployTimeline.Begin("cert")()
	c, err := cfg()
	if err != nil {
		return err
	}
	certified, err = cert.Certificate(ctx, cert.Options{Config: c, Log: logx.Step("cert"), Publish: publishing.Load()})
	return err
}

// Unikernel builds the MirageOS unikernel in _mirage that serves _site.
//
// Runs `mirage configure -t TARGET` with the network options of the
// installed MirageOS (4.9.0 to 4.11.x: spt static, virtio/hvt/xen by DHCP,
// unix on the host's sockets), `make depend` and `make build` in _mirage
// after copying _site to _mirage/htdocs and, with https, the certificate to
// _mirage/tls (both crunched into the kernel). TARGET is
// deploy.mirage_target (spt for boot: host, virtio for uefi, xen for pvgrub);
// none (boot: host only) builds nothing and the host image serves _site;
// unix builds _mirage/dist/blog to run here (`_mirage/dist/blog --port 8080`).
// Output: the kernel under _mirage/dist/ and the receipt _build/unikernel.json.
// Environment: UNIKERNEL=/path/to/kernel skips the build and uses that kernel;
// FORCE=1 rebuilds even when sources and site are unchanged.
func Unikernel(ctx context.Context) error {
	mg.CtxDeps(ctx, Cert)
	defer deployTimeline.Begin("unikernel")()
	c, err := cfg()
	if err != nil {
		return err
	}
	_, err = unikernel.Build(ctx, unikernel.Options{
		MirageDir: c.MirageDir(),
		SiteDir:   c.SiteDir(),
		BuildDir:  c.BuildDir(),
		Target:    c.MirageTarget,
		Prebuilt:  os.Getenv("UNIKERNEL"),
		Publish:   publishing.Load(),
		Force:     forced(),
		Log:       logx.Step("unikernel"),
	})
	return err
}

// Image writes a bootable raw disk image of the kernel under _build/.
//
// Output: _build/disk-<boot>.img, a sparse raw image of deploy.image_size, and
// the receipt _build/image.json (the image digest, boot settings for the AMI). Layout
// deploy.boot: host (GPT + ESP, GRUB EFI boots Debian's cloud kernel from
// deploy.host_kernel with a Go init that runs the unikernel under solo5-spt,
// or serves _site itself with mirage_target: none), uefi (GRUB EFI
// multiboots the kernel) or pvgrub (FAT32 with /boot/grub/menu.lst for
// Amazon's PV-GRUB; deploy.pvgrub_root picks hd0 or hd00). Reproducible:
// unchanged inputs give the same bytes and skip the step; FORCE=1 rewrites
// it. Needs grub-mkstandalone for host and uefi (apt-get install
// grub-efi-amd64-bin).
func Image(ctx context.Context) error {
	mg.CtxDeps(ctx, Unikernel)
	defer deployTimeline.Begin("image")()
	c, err := cfg()
	if err != nil {
		return err
	}
	_, err = image.Build(ctx, image.Options{
		BuildDir: c.BuildDir(),
		Layout:   c.Boot,
		Size:     c.ImageSize,
		Settings: layout.Settings{PVGrubRoot: c.PVGrubRoot, HostKernel: c.HostKernel, Solo5SPT: c.Solo5SPT},
		SiteDir:  c.SiteDir(),
		Force:    forced(),
		Log:      logx.Step("image"),
	})
	return err
}

// Run boots the disk image locally in QEMU with the serial console on this terminal.
//
// host and uefi images boot under OVMF (apt-get install qemu-system-x86 ovmf),
// with KVM when /dev/kvm is usable and software emulation otherwise, and a
// virtio NIC on QEMU's user network. The guest's port 80 is forwarded to
// http://localhost:8080, where the host image's server (or a Mirage virtio
// kernel, for uefi) serves the blog. Quit with Ctrl-A X. pvgrub images cannot
// run under QEMU (no PV-GRUB).
func Run(ctx context.Context) error {
	mg.CtxDeps(ctx, Image)
	c, err := cfg()
	if err != nil {
		return err
	}
	return image.Run(ctx, image.RunOptions{BuildDir: c.BuildDir(), Log: logx.Step("run")})
}

// Bake turns the disk image into an AMI: an EBS snapshot written from this
// machine with the EBS direct APIs (no builder instance, no S3), then RegisterImage.
//
// Only blocks holding data are read and sent, deploy.upload_concurrency at a
// time. Skipped when an AMI of the site is already tagged with the image's
// digest; the AMI is named after the site and the image, so a retried
// registration finds it instead of making a twin. On error or Ctrl-C the
// partial snapshot is deleted. With deploy.domain set it holds the site's
// deploy lease (one run at a time). Output: the receipt _build/bake.json
// (image_id, snapshot_id, blocks uploaded).
// AWS credentials and region come from the SDK's default chain (AWS_PROFILE,
// AWS_REGION, web identity); deploy.region overrides the region and
// AWS_ENDPOINT_URL points it at an emulator.
func Bake(ctx context.Context) error {
	publishing.Store(true)
	mg.CtxDeps(ctx, Image)
	c, err := cfg()
	if err != nil {
		return err
	}
	log := logx.Step("bake")
	if c.Domain == "" {
		_, err = bake.Bake(ctx, bake.Options{Config: c, Log: log})
		return err
	}
	return fleet.WithLease(ctx, fleet.Options{Config: c, Log: log}, "bake", func(ctx context.Context) error {
		_, err := bake.Bake(ctx, bake.Options{Config: c, Log: log, Exclusive: true})
		return err
	})
}

// Launch starts an instance from the AMI and holds it back until it serves the new build.
//
// The AMI is the one in Bake's receipt _build/bake.json, confirmed in AWS
// (its tags name the build). The candidate gets deploy.instance_type, IMDSv2
// only, a public IPv4 address asked for (for its health gate), shutdown
// behaviour stop, the site's security group (TCP 80 in, and 443 with
// deploy.https, nothing else; created when missing), deploy.subnet_id if set,
// and tags (site, build id, image digest, commit, role candidate). It must
// answer deploy.health_url with this build's id within deploy.health_timeout,
// or it is terminated, its console output logged and its AMI marked as
// having failed its gate. Skipped when the site's address already points at
// an instance of the build. Holds the site's deploy lease. Output: the
// receipt _build/launch.json.
func Launch(ctx context.Context) error {
	publishing.Store(true)
	mg.CtxDeps(ctx, Bake)
	c, err := cfg()
	if err != nil {
		return err
	}
	log := logx.Step("launch")
	return fleet.WithLease(ctx, fleet.Options{Config: c, Log: log}, "launch", func(ctx context.Context) error {
		_, err := launch.Launch(ctx, launch.Options{Config: c, Log: log})
		return err
	})
}

// Swap moves the site's Elastic IP to the new instance, then retires the old one after deploy.grace.
//
// The address is allocated once and tagged; AssociateAddress moves it, so
// readers reach the new build at once. The record (an A record at
// deploy.domain to the address) is written the first time, or when it still
// points at an instance as the DNS-swap version wrote it, and waited for
// until INSYNC. The instances replaced stay for deploy.grace (a quick
// rollback), then are terminated; only instances the address does not point
// at are ever terminated. Needs deploy.domain (and a public hosted zone for
// it, or deploy.hosted_zone_id). Holds the site's deploy lease, released
// during the grace. Output: the receipt _build/swap.json.
func Swap(ctx context.Context) error {
	publishing.Store(true)
	c, err := cfg()
	if err != nil {
		return err
	}
	// The domain, zone and record are checked before anything is built or launched.
	log := logx.Step("swap")
	opts := swap.Options{Config: c, Log: log}
	if err := swap.Preflight(ctx, opts); err != nil {
		return err
	}
	mg.CtxDeps(ctx, Launch)
	if err := fleet.WithLease(ctx, fleet.Options{Config: c, Log: log}, "swap", func(ctx context.Context) error {
		_, err := swap.Swap(ctx, opts)
		return err
	}); err != nil {
		return err
	}
	_, err = swap.Retire(ctx, opts)
	return err
}

// Deploy runs the whole chain: Site, Cert, Unikernel, Image, then Bake, Launch and Swap holding the deploy lease.
//
// Beside the bake, the security group is made exact and the site's address
// found (allocated the first time). The last line is the deploy's
// timeline: seconds per phase along the critical path, what ran beside
// what, when the new build went live; _build/deploy.json holds the same.
//
// One deploy of a site at a time: the lease is a record in the site's hosted
// zone that Route53 arbitrates; a second deploy waits for it (up to
// deploy.lease_wait) with progress, then fails naming the holder.
// Unchanged content creates nothing and changes nothing, and says so.
// Ctrl-C (or mage -t) terminates a candidate that never went live.
// First the cheap part of Preflight (tools and configuration, no AWS call)
// and the hosted zone and record: a deploy never starts what it cannot finish.
func Deploy(ctx context.Context) error {
	publishing.Store(true)
	// The timeline starts with the process: its loading, the Go runtime's
	// and the packages' initialisation and mage's dispatch to this target
	// are the "start" phase (a tenth of a second or so, more on a busy
	// machine), time the author waits for like any other.
	if began, err := timeline.ProcessStart(); err == nil {
		deployTimeline = timeline.NewSince(began, "start", time.Now)
	} else {
		deployTimeline = timeline.New(time.Now)
	}
	endPreflight := deployTimeline.Begin("preflight")
	if err := localPreflight(ctx); err != nil {
		return err
	}
	c, err := cfg()
	if err != nil {
		return err
	}
	log := logx.Step("deploy")
	if err := swap.Preflight(ctx, swap.Options{Config: c, Log: log}); err != nil {
		return err
	}
	endPreflight()
	mg.CtxDeps(ctx, Image)
	r, err := deploy.Run(ctx, deploy.Options{
		Config: c, Log: log,
		Bake:     &bake.Options{Log: logx.Step("bake")},
		Launch:   launch.Options{Log: logx.Step("launch")},
		Swap:     swap.Options{Log: logx.Step("swap")},
		Timeline: deployTimeline,
	})
	if r != nil && r.Launch != nil && r.Swap != nil {
		log.Info(swap.DeploySummary(r.Launch, r.Swap))
	}
	if r != nil {
		log.Info(r.Timeline.Line())
	}
	return err
}

// localPreflight is the cheap part of Preflight; it prints the checklist
// only when something would stop the deploy.
func localPreflight(ctx context.Context) error {
	c, err := cfg()
	r, _ := preflight.Local(ctx, preflight.Options{Config: c, ConfigErr: err})
	if err := r.Err(); err != nil {
		r.Print(os.Stderr)
		return err
	}
	return nil
}

// Preflight checks that a deploy can finish before it starts anything.
//
// A checklist, ✓ or ✗ per check with the fix for each failure: the tools
// (jekyll; mirage, UNIKERNEL or mirage_target: none; grub-mkstandalone and
// the host kernel for the layouts that need them; qemu, optional), the
// configuration (domain, region), the credentials (account and ARN,
// never keys), the hosted zone and record of deploy.domain as Swap finds
// them, and the permissions of the calls that create and remove things,
// by EC2 DryRun. Creates nothing. Fails if anything would stop a deploy.
func Preflight(ctx context.Context) error {
	c, err := cfg()
	r := preflight.Run(ctx, preflight.Options{Config: c, ConfigErr: err})
	r.Print(os.Stdout)
	return r.Err()
}

// Policy prints the least-privilege IAM policy (JSON) for the role that deploys.
//
// Exactly the actions the pipeline calls, scoped by the site's tag
// (blog:site), the region, the account and the hosted zone, and
// ChangeResourceRecordSets to the A (or legacy CNAME) record of
// deploy.domain and the TXT record of its deploy lease. The account and
// the zone are read from AWS when credentials allow (the zone as Swap finds
// it); without them they widen to "*", with a warning: set
// deploy.hosted_zone_id to pin the zone. README: "Set up AWS once".
func Policy(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	p, warnings, err := policy.Resolve(ctx, c)
	if err != nil {
		return err
	}
	log := logx.Step("policy")
	for _, w := range warnings {
		log.Warn(w)
	}
	b, err := policy.Build(p).JSON()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// Rollback puts the build that was live most recently back behind the site's address.
//
// Every deploy records on the AMI when its build goes live and when it stops
// being live; the rollback target is the build whose time live ended last
// (never one that failed its health gate). Its instance is reused while it
// is still in its grace, else relaunched from its AMI; either way it passes
// the same health gate as a deploy before the address moves. Holds the
// site's deploy lease.
func Rollback(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	log := logx.Step("rollback")
	_, err = rollback.Rollback(ctx, launch.Options{Config: c, Log: log}, swap.Options{Config: c, Log: log})
	return err
}

// Status prints what is live: record → address → instance → AMI → image digest → build id → commit.
//
// Also lists the site's AMIs (live, rollback target and builds that failed
// their gate marked), instances kept for a quick rollback, any strays, and
// who holds the deploy lease. Changes nothing.
func Status(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	return fleet.Status(ctx, fleet.Options{Config: c, Log: logx.Step("status")}, os.Stdout)
}

// Prune plans removing old AMIs (and their snapshots) and stray instances; APPLY=1 carries it out.
//
// Removes builds that failed their health gate first; keeps the newest
// deploy.keep_images other AMIs, the live one and the rollback target;
// terminates instances nothing sends readers to (verified right before).
// With APPLY=1 it holds the site's deploy lease, so it never runs while a
// deploy does. Prints the plan either way.
func Prune(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	_, err = fleet.Prune(ctx, fleet.Options{Config: c, Log: logx.Step("prune")}, os.Stdout, applySet())
	return err
}

// Destroy plans removing everything of the site; APPLY=1 carries it out.
//
// The record the tool wrote first (so no reader is sent on to an address
// about to be released), then the instances, the Elastic IP, the AMIs and
// their snapshots, the security group, and last the deploy lease; then it
// checks that nothing tagged with the site is left. Holds the deploy lease.
// Cannot be undone: the site is gone, and its address with it.
func Destroy(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	_, err = fleet.Destroy(ctx, fleet.Options{Config: c, Log: logx.Step("destroy")}, os.Stdout, applySet())
	return err
}

// Unlock breaks the site's deploy lease, for a run that died holding it.
//
// A lease expires by itself 10 minutes after its holder stopped renewing it,
// and a holder on this machine whose process is gone is taken over at once;
// unlock is for a run that died elsewhere (a CI runner) when waiting is not
// an option. Breaking the lease of a run still going lets two runs act until
// it notices: check `mage status` first.
func Unlock(ctx context.Context) error {
	c, err := cfg()
	if err != nil {
		return err
	}
	return fleet.Unlock(ctx, fleet.Options{Config: c, Log: logx.Step("unlock")}, os.Stdout)
}

// applySet reports APPLY=1 (or true).
func applySet() bool {
	v := strings.ToLower(os.Getenv("APPLY"))
	return v == "1" || v == "true" || v == "yes"
}

// Test runs every check CI runs: gofmt, go vet, staticcheck and go test ./...
//
// Real tools we did not write are exercised where installed (jekyll, make,
// qemu-system-x86_64 with OVMF, sfdisk, fsck.fat, mtools, qemu-img); under CI
// (CI set) a missing one fails the run instead of skipping its tests.
// `bash .ci/install` installs them on Debian or Ubuntu.
func Test(ctx context.Context) error {
	return check.Run(ctx, ".", os.Stdout)
}

// Config prints the effective deploy settings and where each value came from.
//
// Sources: the deploy: block of _config.yml, a DEPLOY_<KEY> environment
// variable, or the default. Fails listing every invalid value with its fix.
func Config() error {
	c, err := cfg()
	if err != nil {
		return err
	}
	return config.Print(os.Stdout, c)
}
