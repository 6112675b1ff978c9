// Command standin-spt stands in for Solo5's solo5-spt in the host layout's
// spt boot test, where no Mirage toolchain exists to build a real unikernel.
// It checks its command line the way solo5-spt would read it (the tap, the
// kernel file, the unikernel's --ipv4 and --ipv4-gateway), then takes the
// unikernel's address itself (on lo) and answers HTTP there, reporting the
// command line it was given. So the boot test exercises everything of the
// Mirage payload but the unikernel: module loading, the tap, ip_forward, the
// nftables DNAT from the NIC, and the init's supervision of the tender.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
)

func main() {
	args := os.Args[1:]
	var tap, kernel, ipv4, gateway string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--net:service="):
			tap = strings.TrimPrefix(a, "--net:service=")
		case strings.HasPrefix(a, "--ipv4="):
			ipv4 = strings.TrimPrefix(a, "--ipv4=")
		case strings.HasPrefix(a, "--ipv4-gateway="):
			gateway = strings.TrimPrefix(a, "--ipv4-gateway=")
		case strings.HasPrefix(a, "--mem="):
		case !strings.HasPrefix(a, "-") && kernel == "":
			kernel = a
		}
	}
	fail := func(format string, v ...any) {
		fmt.Fprintf(os.Stderr, "standin-spt: "+format+"\n", v...)
		os.Exit(1)
	}
	if _, err := netlink.LinkByName(tap); err != nil {
		fail("no tap %q: %v", tap, err)
	}
	if st, err := os.Stat(kernel); err != nil || st.Size() == 0 {
		fail("no unikernel %q: %v", kernel, err)
	}
	ip, ipnet, err := net.ParseCIDR(ipv4)
	if err != nil || net.ParseIP(gateway) == nil || !ipnet.Contains(net.ParseIP(gateway)) {
		fail("bad --ipv4=%q --ipv4-gateway=%q", ipv4, gateway)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		fail("%v", err)
	}
	if err := netlink.AddrReplace(lo, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}); err != nil {
		fail("taking %s: %v", ip, err)
	}
	body := "standin-spt " + strings.Join(args, " ") + "\n"
	fmt.Printf("standin-spt: serving http://%s/ for tap %s\n", ip, tap)
	err = http.ListenAndServe(net.JoinHostPort(ip.String(), "80"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}))
	fail("%v", err)
}
