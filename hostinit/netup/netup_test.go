package netup

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4}),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(172, 31, 5, 9)),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLeaseFromAnEC2StyleAck reads what a VPC's DHCP server sends: a /20,
// the VPC router, the Amazon DNS server and a jumbo MTU.
func TestLeaseFromAnEC2StyleAck(t *testing.T) {
	l, err := FromACK("ens5", ack(t,
		dhcpv4.WithNetmask(net.CIDRMask(20, 32)),
		dhcpv4.WithRouter(net.IPv4(172, 31, 0, 1)),
		dhcpv4.WithDNS(net.IPv4(172, 31, 0, 2)),
		dhcpv4.WithServerIP(net.IPv4(172, 31, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(172, 31, 0, 1))),
		dhcpv4.WithLeaseTime(3600),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(9001)}),
	))
	if err != nil {
		t.Fatal(err)
	}
	want := Lease{
		Iface: "ens5", Addr: netip.MustParsePrefix("172.31.5.9/20"), Gateway: netip.MustParseAddr("172.31.0.1"),
		MTU: 9001, DNS: []netip.Addr{netip.MustParseAddr("172.31.0.2")}, Server: netip.MustParseAddr("172.31.0.1"), LeaseTime: time.Hour,
	}
	if l.Iface != want.Iface || l.Addr != want.Addr || l.Gateway != want.Gateway || l.MTU != want.MTU || l.Server != want.Server || l.LeaseTime != want.LeaseTime || len(l.DNS) != 1 || l.DNS[0] != want.DNS[0] {
		t.Errorf("lease\n got %+v\nwant %+v", l, want)
	}
}

func TestLeaseEdgeCases(t *testing.T) {
	// QEMU's user network: no MTU option; no mask means a host route.
	l, err := FromACK("eth0", ack(t, dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2))))
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr.Bits() != 32 || l.MTU != 0 || l.Gateway.String() != "10.0.2.2" {
		t.Errorf("lease %+v", l)
	}
	// An absurd MTU is ignored rather than breaking the link.
	l, _ = FromACK("eth0", ack(t, dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(68)})))
	if l.MTU != 0 {
		t.Errorf("MTU 68 accepted")
	}
	noAddr, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if _, err := FromACK("eth0", noAddr); err == nil {
		t.Error("an ACK without an address must fail")
	}
}

func TestPickTheFirstEthernetNIC(t *testing.T) {
	links := []NIC{
		{Index: 5, Name: "tap0", Type: "tuntap", Encap: "ether"},
		{Index: 3, Name: "eth1", Type: "device", Encap: "ether"},
		{Index: 1, Name: "lo", Type: "device", Encap: "loopback"},
		{Index: 2, Name: "ens5", Type: "device", Encap: "ether"},
		{Index: 4, Name: "sit0", Type: "sit", Encap: "sit"},
	}
	n, ok := Pick(links)
	if !ok || n.Name != "ens5" {
		t.Errorf("picked %+v, want ens5", n)
	}
	if _, ok := Pick(links[2:3]); ok {
		t.Error("picked the loopback")
	}
	if _, ok := Pick(nil); ok {
		t.Error("picked from nothing")
	}
}
