package spt

import (
	"bytes"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func input() Input {
	return Input{
		Uplink:       "ens5",
		UplinkPrefix: netip.MustParsePrefix("172.31.5.9/20"),
		Tender:       "/bin/solo5-spt",
		Kernel:       "/srv/unikernel.spt",
		Ports:        []int{80, 443},
		MemMiB:       96,
	}
}

// TestPlanOnEC2 is the plan for a default-VPC instance, as data.
func TestPlanOnEC2(t *testing.T) {
	p, err := Make(input())
	if err != nil {
		t.Fatal(err)
	}
	guest := netip.MustParseAddr("100.127.255.254")
	want := Plan{
		Tap:      "tap0",
		HostAddr: netip.MustParsePrefix("100.127.255.253/30"),
		Guest:    netip.MustParsePrefix("100.127.255.254/30"),
		Gateway:  netip.MustParseAddr("100.127.255.253"),
		Sysctls:  []Sysctl{{Path: "net/ipv4/ip_forward", Value: "1"}},
		Table:    "blog",
		Forwards: []Forward{
			{In: "ens5", Proto: "tcp", Port: 80, To: netip.AddrPortFrom(guest, 80)},
			{In: "ens5", Proto: "tcp", Port: 443, To: netip.AddrPortFrom(guest, 443)},
		},
		Argv: []string{
			"/bin/solo5-spt", "--mem=96", "--net:service=tap0", "/srv/unikernel.spt",
			"--ipv4=100.127.255.254/30", "--ipv4-gateway=100.127.255.253",
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("plan\n got %+v\nwant %+v", p, want)
	}
	if got := p.Forwards[0].String(); got != `iifname "ens5" tcp dport 80 dnat to 100.127.255.254:80` {
		t.Errorf("forward reads %q", got)
	}
	// The tap's /30 holds exactly the two ends, neither on the uplink's network.
	if !p.HostAddr.Masked().Contains(p.Guest.Addr()) || p.HostAddr.Bits() != 30 || input().UplinkPrefix.Masked().Overlaps(p.HostAddr.Masked()) {
		t.Errorf("tap addresses %s and %s", p.HostAddr, p.Guest)
	}
}

func TestPlanAvoidsTheUplinksNetwork(t *testing.T) {
	cases := map[string]string{
		"10.0.0.5/16":        "100.127.255.252/30", // a typical VPC
		"100.64.3.4/10":      "192.168.254.252/30", // a VPC in the shared address space
		"192.168.0.10/16":    "100.127.255.252/30",
		"100.127.255.253/32": "192.168.254.252/30",
	}
	for uplink, subnet := range cases {
		in := input()
		in.UplinkPrefix = netip.MustParsePrefix(uplink)
		p, err := Make(in)
		if err != nil {
			t.Errorf("%s: %v", uplink, err)
			continue
		}
		if p.HostAddr.Masked().String() != subnet {
			t.Errorf("uplink %s: tap subnet %s, want %s", uplink, p.HostAddr.Masked(), subnet)
		}
	}
	in := input()
	in.UplinkPrefix = netip.MustParsePrefix("10.1.2.3/0")
	if _, err := Make(in); err == nil || !strings.Contains(err.Error(), "overlaps every tap subnet") {
		t.Errorf("an uplink covering everything: %v", err)
	}
}

func TestPlanRejectsBadInput(t *testing.T) {
	cases := map[string]func(*Input){
		"no uplink":      func(i *Input) { i.Uplink = "" },
		"no address":     func(i *Input) { i.UplinkPrefix = netip.Prefix{} },
		"no tender":      func(i *Input) { i.Tender = "" },
		"no kernel":      func(i *Input) { i.Kernel = "" },
		"no ports":       func(i *Input) { i.Ports = nil },
		"port 0":         func(i *Input) { i.Ports = []int{0} },
		"port 70000":     func(i *Input) { i.Ports = []int{70000} },
		"repeated port":  func(i *Input) { i.Ports = []int{80, 80} },
		"tap is the NIC": func(i *Input) { i.Tap = "ens5" },
	}
	for name, change := range cases {
		in := input()
		change(&in)
		if _, err := Make(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Without MemMiB the tender's own default applies: no --mem.
	in := input()
	in.MemMiB = 0
	in.Tap = "tap7"
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(p.Argv, func(a string) bool { return strings.HasPrefix(a, "--mem") }) || p.Argv[1] != "--net:service=tap7" {
		t.Errorf("argv %v", p.Argv)
	}
}

// TestForwardExprs checks the nftables expressions of a forward as data.
func TestForwardExprs(t *testing.T) {
	f := Forward{In: "ens5", Proto: "tcp", Port: 80, To: netip.MustParseAddrPort("100.127.255.254:8080")}
	got, err := f.Exprs()
	if err != nil {
		t.Fatal(err)
	}
	ifname := append([]byte("ens5"), make([]byte, 12)...)
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 80}},
		&expr.Immediate{Register: 1, Data: []byte{100, 127, 255, 254}},
		&expr.Immediate{Register: 2, Data: []byte{0x1f, 0x90}},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("exprs\n got %#v\nwant %#v", got, want)
	}
	for _, bad := range []Forward{
		{In: "ens5", Proto: "udp", Port: 53, To: f.To},
		{In: "a-very-long-interface-name", Proto: "tcp", Port: 80, To: f.To},
		{In: "ens5", Proto: "tcp", Port: 80, To: netip.MustParseAddrPort("[fd00::1]:80")},
	} {
		if _, err := bad.Exprs(); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// TestRulesetIsOneTransaction sends the plan's ruleset to a fake netlink
// socket and checks what nftables would receive: the table recreated, two
// nat chains, one rule per forward, in one batch.
func TestRulesetIsOneTransaction(t *testing.T) {
	p, err := Make(input())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		for _, m := range req {
			switch m.Header.Type & 0xff {
			case unix.NFT_MSG_NEWTABLE:
				types = append(types, "newtable")
			case unix.NFT_MSG_DELTABLE:
				types = append(types, "deltable")
			case unix.NFT_MSG_NEWCHAIN:
				name := "chain"
				for _, n := range []string{"prerouting", "postrouting"} {
					if bytes.Contains(m.Data, []byte(n+"\x00")) {
						name += " " + n
					}
				}
				types = append(types, name)
			case unix.NFT_MSG_NEWRULE:
				types = append(types, "rule")
			}
		}
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ruleset(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []string{"newtable", "deltable", "newtable", "chain prerouting", "chain postrouting", "rule", "rule"}
	if !slices.Equal(types, want) {
		t.Errorf("netlink batch %v; want %v", types, want)
	}
}

// TestPlanGivesTheTenderItsLibraries: a dynamically linked tender gets
// LD_LIBRARY_PATH; a static one no environment at all.
func TestPlanGivesTheTenderItsLibraries(t *testing.T) {
	in := input()
	in.LibraryPath = "/usr/lib/solo5-spt"
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Env, []string{"LD_LIBRARY_PATH=/usr/lib/solo5-spt"}) || p.Argv[0] != "/bin/solo5-spt" {
		t.Errorf("env %q argv %q", p.Env, p.Argv)
	}
	if p, _ := Make(input()); p.Env != nil {
		t.Errorf("a static tender gets environment %q", p.Env)
	}
}
