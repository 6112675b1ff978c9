// Command init is PID 1 of the host image: it mounts the essentials, loads
// the kernel modules for the devices present, waits for the random number
// generator if nothing seeded it, brings up the first NIC with DHCP, then
// runs the site's server — the Mirage unikernel under solo5-spt, or the
// built-in static server, whose files load meanwhile — and restarts it when
// it dies. Every step goes to the serial console with its timing, and one
// line sums up the boot ("ready: serving 812ms after init started (…)").
// There is no shell and no other listener.
//
// The Image step builds it with CGO_ENABLED=0 go build -trimpath
// -buildvcs=false -ldflags=-buildid= so the binary is reproducible; the logic
// lives in the packages beside it, which have tests.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unikernel-blog/blog/hostinit/boot"
	"github.com/unikernel-blog/blog/hostinit/console"
	"github.com/unikernel-blog/blog/hostinit/netup"
	"github.com/unikernel-blog/blog/hostinit/secure"
	"github.com/unikernel-blog/blog/hostinit/spec"
	"github.com/unikernel-blog/blog/hostinit/spt"
	"github.com/unikernel-blog/blog/hostinit/static"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "init: this is the host image's PID 1; it runs only as the init of that image (boot it with `mage run`)")
		os.Exit(2)
	}
	log := console.New(os.Stdout)
	err := run(context.Background(), log)
	// PID 1 must not exit (the kernel would panic without a message on the
	// console): say why, then reboot, which on EC2 retries the boot and under
	// `mage run` (-no-reboot) ends QEMU.
	log.Printf("fatal: %v; rebooting in 10s", err)
	time.Sleep(10 * time.Second)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func run(ctx context.Context, log *console.Log) error {
	start := console.Uptime()
	log.Printf("init started")
	done := log.Step("mounting /proc /sys /dev /tmp /run")
	err := boot.MountAll(boot.Mounts)
	mounted := done(err)
	if err != nil {
		return err
	}
	// /dev is devtmpfs now: write to its console, which is the serial port
	// (console=ttyS0 on the kernel command line).
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		os.Stdout, os.Stderr = c, c
		log = console.New(c)
	}
	tl := log.TimelineSince(start)
	tl.Add("mount", mounted)
	cfg, err := spec.Read(spec.Path)
	if err != nil {
		return fmt.Errorf("reading the image's configuration: %w", err)
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	build := cfg.BuildID
	if build == "" {
		build = "(not recorded: the unikernel carries it)"
	}
	rng := "not seeded yet"
	if boot.EntropyReady() {
		rng = "seeded before the init started (the CPU's RDRAND, or the firmware's seed)"
	}
	log.Printf("kernel %s, payload %s, site build %s, random number generator %s", unix.ByteSliceToString(uts.Release[:]), cfg.Payload, build, rng)

	// The site loads while the modules and the network come up: it needs
	// neither.
	var site <-chan loaded
	if cfg.Payload == spec.PayloadStatic && cfg.Static != nil {
		site = loadSite(log, tl, cfg.Static)
	}

	done = log.Step("loading the kernel modules for the devices present")
	failed := 0
	for _, r := range boot.LoadForDevices(cfg.Modules, "/sys", boot.FinitModule, log.Printf) {
		switch {
		case r.Err == nil:
			log.Printf("  module %s loaded in %s (%s)", r.Name, r.Took.Round(time.Millisecond), r.Why)
		case r.NoDevice:
			log.Printf("  module %s: no device for it here (%v)", r.Name, r.Err)
		default:
			failed++
			log.Printf("  module %s FAILED (%s): %v", r.Name, r.Why, r.Err)
		}
	}
	if failed > 0 {
		tl.Add("modules", done(fmt.Errorf("%d modules failed to load", failed)))
	} else {
		tl.Add("modules", done(nil))
	}

	// DHCP's transaction id is the first thing that needs the generator.
	if boot.EntropyReady() {
		log.Printf("random number generator seeded: no wait")
		tl.Add("entropy", 0)
	} else {
		done = log.Step("waiting for the kernel's random number generator (no RDRAND, no virtio-rng: the kernel makes entropy from timer jitter)")
		err = boot.WaitForEntropy()
		tl.Add("entropy", done(err))
		if err != nil {
			return err
		}
	}

	done = log.Step("bringing up the network (DHCP)")
	netCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	lease, err := netup.Up(netCtx, log)
	cancel()
	tl.Add("network", done(err))
	if err != nil {
		return err
	}
	mtu := "the driver's default"
	if lease.MTU > 0 {
		mtu = fmt.Sprint(lease.MTU)
	}
	log.Printf("network up: %s address %s gateway %s mtu %s (DHCP server %s, lease %s)",
		lease.Iface, lease.Addr, lease.Gateway, mtu, lease.Server, lease.LeaseTime)

	switch cfg.Payload {
	case spec.PayloadStatic:
		return serveStatic(ctx, log, tl, cfg.Static, site)
	case spec.PayloadSPT:
		return runSPT(ctx, log, tl, cfg.SPT, lease)
	}
	return fmt.Errorf("unknown payload %q", cfg.Payload)
}

// loaded is the site read into memory, or why it could not be.
type loaded struct {
	srv *static.Server
	err error
}

// loadSite reads and compresses the site in the background.
func loadSite(log *console.Log, tl *console.Timeline, c *spec.Static) <-chan loaded {
	ch := make(chan loaded, 1)
	go func() {
		done := log.Step("loading the site from " + c.Root)
		srv, err := static.Load(c.Root, time.Unix(c.Modified, 0))
		tl.Add("site (alongside)", done(err))
		ch <- loaded{srv, err}
	}()
	return ch
}

func serveStatic(ctx context.Context, log *console.Log, tl *console.Timeline, c *spec.Static, site <-chan loaded) error {
	l := <-site
	if l.err != nil {
		return l.err
	}
	srv := l.srv
	addr := fmt.Sprintf(":%d", c.Port)
	serve := func() error { return srv.Serve(ctx, addr) }
	what := "over HTTP on " + addr
	if t := c.TLS; t != nil {
		done := log.Step("loading the certificate for " + t.Domain)
		tc, err := secure.Load(t.Chain, t.Key, secure.Config{Domain: t.Domain, Aliases: t.Aliases, HSTSMaxAge: t.HSTSMaxAge, MaxConns: srv.MaxConns})
		done(err)
		if err != nil {
			return err
		}
		tlsAddr := fmt.Sprintf(":%d", t.Port)
		serve = func() error { return secure.Serve(ctx, tlsAddr, addr, srv, tc) }
		what = fmt.Sprintf("over HTTPS (HTTP/2 and HTTP/1.1) on %s as %s, %s redirecting to it", tlsAddr, t.Domain, addr)
	}
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		log.Printf("serving %d files %s", srv.Files(), what)
		if tl != nil {
			tl.Ready("serving")
			tl = nil
		}
		err := serve()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Printf("the server stopped (%v); restarting in %s", err, backoff)
		time.Sleep(backoff)
	}
}

func runSPT(ctx context.Context, log *console.Log, tl *console.Timeline, c *spec.SPT, lease netup.Lease) error {
	plan, err := spt.Make(spt.Input{
		Uplink: lease.Iface, UplinkPrefix: lease.Addr,
		Tender: c.Tender, Kernel: c.Kernel, Ports: c.Ports, MemMiB: c.MemMiB, LibraryPath: c.LibraryPath,
	})
	if err != nil {
		return err
	}
	log.Printf("plan: tap %s host %s unikernel %s gateway %s", plan.Tap, plan.HostAddr, plan.Guest, plan.Gateway)
	for _, f := range plan.Forwards {
		log.Printf("plan: nft table ip %s: %s", plan.Table, f)
	}
	done := log.Step("creating the tap and the port forwards")
	err = spt.Apply(plan)
	tl.Add("tap and forwards", done(err))
	if err != nil {
		return err
	}
	tl.Ready("starting the unikernel")
	spt.Supervise(ctx, log, plan.Argv, plan.Env)
	return ctx.Err()
}
