// Package netup brings up the host's network: the loopback, then the first
// Ethernet NIC (ENA on Nitro, xen-netfront on Xen HVM, virtio-net under
// QEMU) with an address, route and MTU from DHCP.
package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/unikernel-blog/blog/hostinit/console"
)

// Lease is the NIC's configuration as DHCP gave it.
type Lease struct {
	Iface     string
	Addr      netip.Prefix // address and network
	Gateway   netip.Addr   // invalid when DHCP named no router
	MTU       int          // 0 when not offered (EC2 offers 9001 in a VPC)
	DNS       []netip.Addr
	Server    netip.Addr
	LeaseTime time.Duration
}

// FromACK reads a lease from a DHCPACK.
func FromACK(iface string, ack *dhcpv4.DHCPv4) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Lease{}, errors.New("the DHCP reply assigns no address")
	}
	mask := ack.SubnetMask()
	if mask == nil {
		// RFC 2131 lets servers omit the mask; the class-less default for a
		// single host keeps the gateway reachable through the on-link route
		// added below.
		mask = net.CIDRMask(32, 32)
	}
	bits, size := mask.Size()
	if size != 32 {
		return Lease{}, fmt.Errorf("the DHCP reply has a bad subnet mask %v", mask)
	}
	l := Lease{Iface: iface, Addr: netip.PrefixFrom(ip, bits), LeaseTime: ack.IPAddressLeaseTime(0)}
	if r := ack.Router(); len(r) > 0 {
		l.Gateway, _ = netip.AddrFromSlice(r[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if s := ack.ServerIdentifier(); s != nil {
		l.Server, _ = netip.AddrFromSlice(s.To4())
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= 576 {
		l.MTU = int(mtu)
	}
	return l, nil
}

// NIC is what choosing the uplink needs to know of a link.
type NIC struct {
	Index int
	Name  string
	Type  string // netlink's link type: "device" for physical NICs
	Encap string // "ether" for Ethernet
	Up    bool
}

// Pick chooses the uplink: the Ethernet device with the lowest index (the
// first the kernel found), skipping loopback, tunnels and taps.
func Pick(links []NIC) (NIC, bool) {
	links = slices.Clone(links)
	slices.SortFunc(links, func(a, b NIC) int { return a.Index - b.Index })
	for _, l := range links {
		if l.Encap == "ether" && l.Type == "device" {
			return l, true
		}
	}
	return NIC{}, false
}

// WaitForNIC polls until a NIC appears: its driver may still be probing when
// the module load returns.
func WaitForNIC(ctx context.Context) (netlink.Link, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("listing network links: %w", err)
		}
		var nics []NIC
		for _, l := range links {
			a := l.Attrs()
			nics = append(nics, NIC{Index: a.Index, Name: a.Name, Type: l.Type(), Encap: a.EncapType})
		}
		if n, ok := Pick(nics); ok {
			return netlink.LinkByIndex(n.Index)
		}
		select {
		case <-ctx.Done():
			names := []string{}
			for _, n := range nics {
				names = append(names, n.Name+"("+n.Type+"/"+n.Encap+")")
			}
			return nil, fmt.Errorf("no Ethernet NIC appeared (links: %v); the instance type's NIC driver (ena, xen-netfront or virtio_net) did not load or found no device: %w", names, ctx.Err())
		case <-tick.C:
		}
	}
}

// Up configures the loopback and the first NIC by DHCP, retrying DHCP until
// ctx ends.
func Up(ctx context.Context, log *console.Log) (Lease, error) {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("bringing up lo: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	nic, err := WaitForNIC(waitCtx)
	cancel()
	if err != nil {
		return Lease{}, err
	}
	name := nic.Attrs().Name
	log.Printf("uplink %s (%s, mac %s)", name, nic.Type(), nic.Attrs().HardwareAddr)
	if err := netlink.LinkSetUp(nic); err != nil {
		return Lease{}, fmt.Errorf("bringing up %s: %w", name, err)
	}
	var lease Lease
	for attempt := 1; ; attempt++ {
		lease, err = dhcp(ctx, name)
		if err == nil {
			break
		}
		log.Printf("DHCP on %s, attempt %d: %v", name, attempt, err)
		select {
		case <-ctx.Done():
			return Lease{}, fmt.Errorf("no DHCP lease on %s: %w", name, err)
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
	if err := Apply(nic, lease); err != nil {
		return Lease{}, err
	}
	return lease, nil
}

func dhcp(ctx context.Context, iface string) (Lease, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return Lease{}, fmt.Errorf("opening a DHCP client on %s: %w", iface, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	l, err := c.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionInterfaceMTU))
	if err != nil {
		return Lease{}, err
	}
	return FromACK(iface, l.ACK)
}

// Apply puts the lease on the link: MTU, address, default route. The lease is
// not renewed: EC2 keeps an instance's private address for its life, and the
// address stays configured here whatever the lease time says.
func Apply(link netlink.Link, l Lease) error {
	name := link.Attrs().Name
	if l.MTU > 0 {
		if err := netlink.LinkSetMTU(link, l.MTU); err != nil {
			return fmt.Errorf("setting the MTU of %s to %d: %w", name, l.MTU, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.Addr().AsSlice(), Mask: net.CIDRMask(l.Addr.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", l.Addr, name, err)
	}
	if l.Gateway.IsValid() {
		gw := net.IP(l.Gateway.AsSlice())
		if !l.Addr.Contains(l.Gateway) {
			// A gateway outside the subnet needs a route to itself first.
			if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
				return fmt.Errorf("adding a route to the gateway %s on %s: %w", l.Gateway, name, err)
			}
		}
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("adding the default route via %s on %s: %w", l.Gateway, name, err)
		}
	}
	return nil
}
