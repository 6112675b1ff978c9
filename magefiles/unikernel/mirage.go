package unikernel

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version is a MirageOS release: what `mirage --version` prints.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

// versionRE is a release's version. Mirage's Project.version is the
// watermark "%%VERSION%%" (lib/mirage.ml), which a release tarball carries as
// its tag, with or without the "v"; anything else (a pinned checkout's
// "v4.11.1-3-gabc1234", or the unsubstituted watermark) is not a release
// whose options are known.
var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)$`)

// ParseVersion reads `mirage --version` output.
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Version{}, fmt.Errorf("%q is not a MirageOS release version (want e.g. 4.11.1)", strings.TrimSpace(s))
	}
	var n [3]int
	for i := range n {
		var err error
		if n[i], err = strconv.Atoi(m[i+1]); err != nil {
			return Version{}, fmt.Errorf("%q: %w", s, err)
		}
	}
	return Version{n[0], n[1], n[2]}, nil
}

// dhcpSwitch is how `mirage configure` is told whether the direct stack
// leases its address.
type dhcpSwitch int

const (
	dhcpOption dhcpSwitch = iota // --dhcp BOOL (a configure key over Cmdliner's Arg.bool)
	dhcpFlag                     // --no-dhcp (a configure flag; DHCP otherwise)
)

// Release is a range of MirageOS versions that take the same network options
// at configure time. Every row was read in the MirageOS sources at the tags
// its Verified field names (github.com/mirage/mirage).
type Release struct {
	From, Before Version // the versions From ≤ v < Before
	DHCP         dhcpSwitch
	DHCPDefault  bool   // whether the direct stack leases when configure is not told
	Verified     string // where the row was read
}

// Supported are the MirageOS releases whose configure options this build
// knows, oldest first and contiguous. config.ml's first line bounds mirage to
// the same range (ConfigMLConstraint; a test keeps the two equal), and the
// unikernel workflow builds with one version from each row.
//
// In every row, Mirage's generic_stackv4v6 (lib/devices/stack.ml) chooses
// the stack from the target, --net and DHCP: --net host (or socket) gives the
// host's sockets on any target; otherwise DHCP on gives the direct stack
// leasing its address; otherwise unix and macosx get the host's sockets and
// every other target the direct stack with a static address, taken at boot
// from --ipv4 and --ipv4-gateway (lib/devices/ip.ml keyed_create_ipv4,
// default 10.0.0.2/24). The --net key (host|socket|direct|ocaml,
// lib/devices/key.ml) exists unchanged in all of them.
var Supported = []Release{
	{
		From: Version{4, 9, 0}, Before: Version{4, 10, 5}, DHCP: dhcpOption, DHCPDefault: false,
		Verified: "v4.9.0, v4.10.0, v4.10.3, v4.10.4: lib/devices/key.ml `let dhcp` = configure_key ~default:false Arg.bool \"dhcp\"",
	},
	{
		// CHANGES.md 4.10.5: "Enable DHCP by default" (#1628). A spt kernel
		// configured without --dhcp false leases, and boots only because
		// DHCP mode also takes an optional --ipv4 (Runtime_arg.V4.optional_network).
		From: Version{4, 10, 5}, Before: Version{4, 11, 0}, DHCP: dhcpOption, DHCPDefault: true,
		Verified: "v4.10.5, v4.10.6: lib/devices/key.ml `let dhcp` = configure_key ~default:true Cmdliner.Arg.bool \"dhcp\"",
	},
	{
		// CHANGES.md 4.11.0: "BREAKING: the --dhcp configuration-time
		// argument is now a flag --no-dhcp" (#1636); --dhcp is an unknown
		// option there.
		From: Version{4, 11, 0}, Before: Version{4, 12, 0}, DHCP: dhcpFlag, DHCPDefault: true,
		Verified: "v4.11.0, v4.11.1: lib/devices/key.ml `let no_dhcp` = configure_flag \"no-dhcp\"; stack.ml chooses DHCP unless --no-dhcp",
	},
}

// supportedRange reads as the opam constraint of the supported releases.
func supportedRange() (from, before Version) {
	return Supported[0].From, Supported[len(Supported)-1].Before
}

// OpamConstraint is the opam package constraint that installs a supported
// MirageOS: `opam install 'mirage>=4.9.0&<4.12.0'`.
func OpamConstraint() string {
	from, before := supportedRange()
	return fmt.Sprintf("mirage>=%s&<%s", from, before)
}

// ConfigMLConstraint is the first line config.ml must carry: `mirage
// configure` refuses other versions itself (Functoria's check_version,
// lib/functoria/tool.ml: "(* mirage [>= a.b.c] [&] [< d.e.f] *)").
func ConfigMLConstraint() string {
	from, before := supportedRange()
	return fmt.Sprintf("(* mirage >= %s & < %s *)", from, before)
}

// Lookup finds the row of v, or says why v cannot be used and what to do.
func Lookup(v Version) (Release, error) {
	for _, r := range Supported {
		if !v.Less(r.From) && v.Less(r.Before) {
			return r, nil
		}
	}
	from, before := supportedRange()
	install := fmt.Sprintf("install a supported release: `opam install '%s'`", OpamConstraint())
	if v.Less(from) {
		return Release{}, fmt.Errorf("MirageOS %s is older than this blog supports (%s up to, not including, %s): config.ml needs Mirage 4.9's API; %s", v, from, before, install)
	}
	return Release{}, fmt.Errorf("MirageOS %s is newer than this build knows: its configure options were checked for %s up to, not including, %s (the table in magefiles/unikernel/mirage.go); "+
		"%s, or check %d.%d's network options (`mirage configure --help`, its CHANGES.md) and add a row", v, from, before, install, v.Major, v.Minor)
}

// Network is how a target's kernel gets its address.
type Network string

const (
	// Static: the direct stack with the address given at boot. spt runs
	// behind the host image's tap, whose init passes --ipv4 and
	// --ipv4-gateway (hostinit/spt plan); a DHCP kernel would ask a tap on
	// which no DHCP server answers.
	Static Network = "static"
	// DHCP: the direct stack leasing its address, as on QEMU's user network
	// or a cloud's.
	DHCP Network = "dhcp"
	// Socket: the host's own sockets (--net host), so `dist/blog --port
	// 8080` answers on localhost with no tap and no lease.
	Socket Network = "socket"
)

// targetNetworks are the mirage configure targets this build drives, and
// how each gets its address.
var targetNetworks = map[string]Network{
	"spt":    Static,
	"virtio": DHCP,
	"hvt":    DHCP,
	"xen":    DHCP,
	"unix":   Socket,
}

// NetworkOf is how target's kernel is configured to get its address.
func NetworkOf(target string) (Network, error) {
	n, ok := targetNetworks[target]
	if !ok {
		return "", fmt.Errorf("no network options known for mirage target %q; use spt, virtio, hvt, xen or unix", target)
	}
	return n, nil
}

// ConfigureArgs is the mirage configure command line for target on MirageOS
// v: the network options are explicit, so a kernel's network does not depend
// on the release's defaults.
func ConfigureArgs(mirage, target string, v Version) ([]string, error) {
	rel, err := Lookup(v)
	if err != nil {
		return nil, err
	}
	n, err := NetworkOf(target)
	if err != nil {
		return nil, err
	}
	argv := []string{mirage, "configure", "-t", target}
	switch {
	case n == Socket:
		argv = append(argv, "--net", "host")
	case rel.DHCP == dhcpOption:
		argv = append(argv, "--dhcp", strconv.FormatBool(n == DHCP))
	case n == Static: // dhcpFlag
		argv = append(argv, "--no-dhcp")
	}
	return argv, nil
}

// versionTimeout bounds `mirage --version`, which only prints a string.
const versionTimeout = 30 * time.Second

// DetectVersion runs `mirage --version`.
func DetectVersion(ctx context.Context, mirage string) (Version, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, mirage, "--version")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Version{}, fmt.Errorf("`%s --version` failed: %w; %s", mirage, err, strings.TrimSpace(stderr.String()))
	}
	v, err := ParseVersion(stdout.String())
	if err != nil {
		return Version{}, fmt.Errorf("`%s --version`: %w; install a MirageOS release with `opam install '%s'`", mirage, err, OpamConstraint())
	}
	return v, nil
}
