package spt

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/unikernel-blog/blog/hostinit/console"
)

// Apply carries the plan's network part out: the tap with the host's
// address, the sysctls and the nftables forwards. It is safe to repeat.
func Apply(p Plan) error {
	if old, err := netlink.LinkByName(p.Tap); err == nil {
		if err := netlink.LinkDel(old); err != nil {
			return fmt.Errorf("removing the old %s: %w", p.Tap, err)
		}
	}
	la := netlink.NewLinkAttrs()
	la.Name = p.Tap
	// IFF_TAP|IFF_NO_PI is how solo5-spt attaches; persistent, so the device
	// outlives this process and the tender opens it by name.
	tap := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("creating the tap %s: %w (is the tun module loaded and /dev/net/tun present?)", p.Tap, err)
	}
	link, err := netlink.LinkByName(p.Tap)
	if err != nil {
		return fmt.Errorf("finding the new tap %s: %w", p.Tap, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.HostAddr.Addr().AsSlice(), Mask: net.CIDRMask(p.HostAddr.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", p.HostAddr, p.Tap, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", p.Tap, err)
	}
	for _, s := range p.Sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", s.Path), []byte(s.Value), 0o644); err != nil {
			return fmt.Errorf("setting %s=%s: %w", s.Path, s.Value, err)
		}
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	if err := p.ruleset(c); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the port forwards in nftables table %s: %w (are nf_tables, nft_chain_nat and nft_nat loaded?)", p.Table, err)
	}
	return nil
}

// Supervise runs argv, with env added to the init's environment, until ctx
// ends, restarting it when it exits: quickly at first, backing off to 30 s
// while it keeps dying young.
func Supervise(ctx context.Context, log *console.Log, argv, env []string) {
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if len(env) > 0 {
			cmd.Env = append(os.Environ(), env...)
			log.Printf("starting %v with %v", argv, env)
		} else {
			log.Printf("starting %v", argv)
		}
		err := cmd.Run()
		ran := time.Since(start).Round(time.Millisecond)
		if ctx.Err() != nil {
			return
		}
		if ran > time.Minute {
			backoff = time.Second
		}
		log.Printf("%s exited after %s (%v); restarting in %s", filepath.Base(argv[0]), ran, err, backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
