package spt

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestApplyInANetworkNamespace carries a plan out for real, in a fresh
// network namespace of this machine's kernel: the tap with the host's
// address, ip_forward and the nftables forwards, then applies it again (a
// payload restart) and reads it all back. It needs root (CI runs as root).
func TestApplyInANetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace, a tap and nftables rules")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun in this kernel")
	}
	// Namespaces belong to threads: stay on this one, and give it back to
	// the original namespace at the end.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // creates and enters it
	if err != nil {
		t.Skipf("cannot create a network namespace here: %v", err)
	}
	defer func() {
		netns.Set(orig)
		ns.Close()
	}()

	// The uplink need not exist: nftables matches iifname as text.
	p, err := Make(Input{Uplink: "ens5", UplinkPrefix: netip.MustParsePrefix("172.31.5.9/20"), Tender: "/bin/solo5-spt", Kernel: "/srv/u.spt", Ports: []int{80, 443}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	tap, err := netlink.LinkByName("tap0")
	if err != nil {
		t.Fatal(err)
	}
	if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		t.Errorf("tap0 is a %T, not a tap", tap)
	}
	if tap.Attrs().Flags&(1<<0) == 0 { // net.FlagUp
		t.Error("tap0 is not up")
	}
	addrs, err := netlink.AddrList(tap, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != p.HostAddr.String() {
		t.Errorf("tap0 addresses %v (%v); want %s", addrs, err, p.HostAddr)
	}
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil || string(fwd) != "1\n" {
		t.Errorf("ip_forward %q (%v)", fwd, err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Skipf("nftables not available in this kernel: %v", err)
	}
	var names []string
	for _, ch := range chains {
		if ch.Table.Name == p.Table {
			names = append(names, ch.Name)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"postrouting", "prerouting"}) {
		t.Errorf("chains in table %s: %v", p.Table, names)
	}
	rules, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: p.Table}, &nftables.Chain{Name: "prerouting"})
	if err != nil {
		t.Fatal(err)
	}
	// Applied twice, still one rule per forward: the table was replaced.
	if len(rules) != len(p.Forwards) {
		t.Fatalf("%d rules after two applies; want %d", len(rules), len(p.Forwards))
	}
	// The kernel holds the expressions the plan made, read back and decoded.
	for i, r := range rules {
		want, _ := p.Forwards[i].Exprs()
		for j := range max(len(r.Exprs), len(want)) {
			if j >= len(r.Exprs) || j >= len(want) || !reflect.DeepEqual(r.Exprs[j], want[j]) {
				t.Errorf("rule %d expression %d in the kernel differs from the plan's:\n%s\nwant\n%s", i, j, show(r.Exprs, j), show(want, j))
			}
		}
	}
}

func show(e []expr.Any, i int) string {
	if i >= len(e) {
		return "(none)"
	}
	return fmt.Sprintf("%#v", e[i])
}
