// Package spt runs the Mirage payload: the unikernel under Solo5's sandboxed
// process tender (solo5-spt), reached through a tap device.
//
// The network set-up is a Plan: a pure function computes it from the uplink
// (the NIC DHCP configured) and the image's settings, as data — the tap, the
// addresses on both ends, the sysctls, the forwarding rules and the tender's
// command line — and Apply carries it out. Tests check the plan as data;
// only Apply touches the kernel.
package spt

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// DefaultTap is the tap device the unikernel's network ("service") uses.
const DefaultTap = "tap0"

// Subnets are the /30s the tap may use, in order of preference: the first
// that does not overlap the uplink's network wins. Chosen from ranges VPCs and
// home networks rarely use; EC2's default VPC is 172.31.0.0/16 and
// 169.254.0.0/16 holds the instance metadata service, so neither appears.
var Subnets = []netip.Prefix{
	netip.MustParsePrefix("100.127.255.252/30"),
	netip.MustParsePrefix("192.168.254.252/30"),
	netip.MustParsePrefix("10.254.254.252/30"),
}

// Input is what a plan depends on.
type Input struct {
	Uplink       string       // the NIC traffic arrives on, e.g. ens5
	UplinkPrefix netip.Prefix // its address and network, e.g. 172.31.5.9/20
	Tap          string       // "" means DefaultTap
	Tender       string       // path of solo5-spt
	Kernel       string       // path of the .spt unikernel
	Ports        []int        // TCP ports forwarded to the unikernel (80, 443)
	MemMiB       int          // the unikernel's memory (solo5-spt --mem)
	LibraryPath  string       // the tender's LD_LIBRARY_PATH, "" for none
}

// Forward is one port forward: TCP to Port arriving on In goes to To.
type Forward struct {
	In    string
	Proto string // "tcp"
	Port  int
	To    netip.AddrPort
}

// String reads as the nft rule it becomes.
func (f Forward) String() string {
	return fmt.Sprintf("iifname %q %s dport %d dnat to %s", f.In, f.Proto, f.Port, f.To)
}

// Plan is everything Apply does, in order.
type Plan struct {
	Tap      string       // tap device to create (IFF_TAP|IFF_NO_PI, as solo5-spt opens it)
	HostAddr netip.Prefix // the host's end of the tap, e.g. 100.127.255.253/30
	Guest    netip.Prefix // the unikernel's address, e.g. 100.127.255.254/30
	Gateway  netip.Addr   // the unikernel's gateway: the host's end
	// Sysctls to set, by /proc/sys path: forwarding, so packets for the
	// unikernel cross from the uplink to the tap.
	Sysctls []Sysctl
	// Table is the nftables table (family ip) holding the forwards, in a
	// "prerouting" nat chain; replies are translated back by conntrack.
	Table    string
	Forwards []Forward
	// Argv is the tender's command line, Env what it adds to the init's
	// environment.
	Argv []string
	Env  []string
}

// Sysctl is one /proc/sys setting.
type Sysctl struct{ Path, Value string }

// Make computes the plan. It does nothing but arithmetic.
func Make(in Input) (Plan, error) {
	if in.Uplink == "" || !in.UplinkPrefix.IsValid() {
		return Plan{}, errors.New("spt plan: no uplink: the network must be up first")
	}
	if in.Tender == "" || in.Kernel == "" {
		return Plan{}, errors.New("spt plan: the tender and the unikernel must be named")
	}
	if len(in.Ports) == 0 {
		return Plan{}, errors.New("spt plan: no ports to forward")
	}
	tap := in.Tap
	if tap == "" {
		tap = DefaultTap
	}
	if tap == in.Uplink {
		return Plan{}, fmt.Errorf("spt plan: the tap %s cannot be the uplink", tap)
	}
	var subnet netip.Prefix
	for _, s := range Subnets {
		if !s.Overlaps(in.UplinkPrefix.Masked()) {
			subnet = s
			break
		}
	}
	if !subnet.IsValid() {
		return Plan{}, fmt.Errorf("spt plan: the uplink's network %s overlaps every tap subnet (%v)", in.UplinkPrefix.Masked(), Subnets)
	}
	host := subnet.Addr().Next()
	guest := host.Next()
	p := Plan{
		Tap:      tap,
		HostAddr: netip.PrefixFrom(host, subnet.Bits()),
		Guest:    netip.PrefixFrom(guest, subnet.Bits()),
		Gateway:  host,
		Sysctls:  []Sysctl{{Path: "net/ipv4/ip_forward", Value: "1"}},
		Table:    "blog",
	}
	seen := map[int]bool{}
	for _, port := range in.Ports {
		if port < 1 || port > 65535 || seen[port] {
			return Plan{}, fmt.Errorf("spt plan: bad or repeated port %d", port)
		}
		seen[port] = true
		p.Forwards = append(p.Forwards, Forward{In: in.Uplink, Proto: "tcp", Port: port, To: netip.AddrPortFrom(guest, uint16(port))})
	}
	if in.LibraryPath != "" {
		p.Env = []string{"LD_LIBRARY_PATH=" + in.LibraryPath}
	}
	p.Argv = []string{in.Tender}
	if in.MemMiB > 0 {
		p.Argv = append(p.Argv, "--mem="+strconv.Itoa(in.MemMiB))
	}
	// Mirage 4 names its network device "service"; the unikernel takes its
	// address and gateway as boot arguments after the kernel.
	p.Argv = append(p.Argv,
		"--net:service="+tap,
		in.Kernel,
		"--ipv4="+p.Guest.String(),
		"--ipv4-gateway="+p.Gateway.String(),
	)
	return p, nil
}
