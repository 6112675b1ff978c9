// Command init is PID 1 of the host image: it mounts the essentials, loads
// the kernel modules, brings up the first NIC with DHCP, then runs the site's
// server — the Mirage unikernel under solo5-spt, or the built-in static
// server — and restarts it when it dies. Every step goes to the serial
// console with its timing. There is no shell and no other listener.
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
	log.Printf("init started")
	done := log.Step("mounting /proc /sys /dev /tmp /run")
	err := boot.MountAll(boot.Mounts)
	done(err)
	if err != nil {
		return err
	}
	// /dev is devtmpfs now: write to its console, which is the serial port
	// (console=ttyS0 on the kernel command line).
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		os.Stdout, os.Stderr = c, c
		log = console.New(c)
	}
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
	log.Printf("kernel %s, payload %s, site build %s", unix.ByteSliceToString(uts.Release[:]), cfg.Payload, build)

	done = log.Step(fmt.Sprintf("loading %d kernel modules", len(cfg.Modules)))
	failed := 0
	for _, r := range boot.LoadModules(cfg.Modules) {
		switch {
		case r.Err == nil:
			log.Printf("  module %s loaded", boot.ModuleName(r.Path))
		case r.NoDevice:
			log.Printf("  module %s: no device for it here (%v); fine on other instance families", boot.ModuleName(r.Path), r.Err)
		default:
			failed++
			log.Printf("  module %s FAILED: %v", boot.ModuleName(r.Path), r.Err)
		}
	}
	if failed > 0 {
		done(fmt.Errorf("%d modules failed to load", failed))
	} else {
		done(nil)
	}

	done = log.Step("waiting for the kernel's random number generator")
	err = boot.WaitForEntropy()
	done(err)
	if err != nil {
		return err
	}

	done = log.Step("bringing up the network (DHCP)")
	netCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	lease, err := netup.Up(netCtx, log)
	cancel()
	done(err)
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
		return serveStatic(ctx, log, cfg.Static)
	case spec.PayloadSPT:
		return runSPT(ctx, log, cfg.SPT, lease)
	}
	return fmt.Errorf("unknown payload %q", cfg.Payload)
}

func serveStatic(ctx context.Context, log *console.Log, c *spec.Static) error {
	done := log.Step("loading the site from " + c.Root)
	srv, err := static.Load(c.Root, time.Unix(c.Modified, 0))
	done(err)
	if err != nil {
		return err
	}
	addr := fmt.Sprintf(":%d", c.Port)
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		log.Printf("serving %d files over HTTP on %s", srv.Files(), addr)
		err := srv.Serve(ctx, addr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Printf("the HTTP server stopped (%v); restarting in %s", err, backoff)
		time.Sleep(backoff)
	}
}

func runSPT(ctx context.Context, log *console.Log, c *spec.SPT, lease netup.Lease) error {
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
	done(err)
	if err != nil {
		return err
	}
	spt.Supervise(ctx, log, plan.Argv, plan.Env)
	return ctx.Err()
}
