package image

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/unikernel-blog/blog/magefiles/image/layout/host"
	"github.com/unikernel-blog/blog/magefiles/image/layout/pvgrub"
	"github.com/unikernel-blog/blog/magefiles/image/layout/uefi"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// QEMU is the emulator `mage run` starts.
const QEMU = "qemu-system-x86_64"

// Firmware is an OVMF build QEMU can boot UEFI images with: a code/vars
// pflash pair (vars copied, as the guest writes them), or one combined image.
type Firmware struct {
	Code string // read-only pflash code, or the -bios image when Vars is empty
	Vars string // template for the writable variable store
}

// DefaultFirmware lists OVMF's install paths, best first: Debian/Ubuntu's
// 4 MiB pflash pair (package ovmf), the older 2 MiB pair, then the combined
// image.
var DefaultFirmware = []Firmware{
	{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{Code: "/usr/share/OVMF/OVMF_CODE.fd", Vars: "/usr/share/OVMF/OVMF_VARS.fd"},
	{Code: "/usr/share/ovmf/OVMF.fd"},
	{Code: "/usr/share/qemu/OVMF.fd"},
}

// QemuOptions describe a local boot.
type QemuOptions struct {
	Image  string // the raw disk image
	Layout string // its layout: only uefi boots under QEMU
	// VarsCopy is where the writable copy of the OVMF variables goes.
	VarsCopy string
	// Serial is QEMU's -serial backend: "mon:stdio" (default) puts the console
	// on the terminal with QEMU's monitor on Ctrl-A C; "file:PATH" logs it.
	Serial string
	// HostPort forwards localhost:HostPort to the guest's port 80; 0 means 8080.
	HostPort int
	// HostTLSPort forwards localhost:HostTLSPort to the guest's port 443; 0 forwards nothing.
	HostTLSPort int
	Memory      string   // guest memory; "" means 512M
	Extra       []string // more QEMU arguments
	// Firmware candidates, best first; nil means DefaultFirmware.
	Firmware []Firmware
	// KVM says whether to use hardware virtualisation; nil asks KVMUsable.
	KVM *bool
}

// Qemu is a QEMU command line: the firmware variables to copy first, then
// Path with Args.
type Qemu struct {
	Path     string
	Args     []string
	VarsFrom string // copy this to VarsTo before starting ("" when not needed)
	VarsTo   string
	KVM      bool
}

// ErrCannotRunPVGrub says a pvgrub image needs Xen's PV-GRUB, which QEMU lacks.
var ErrCannotRunPVGrub = errors.New("run: pvgrub images boot only under Xen's PV-GRUB (an EC2 paravirtual AKI), which QEMU does not have; set deploy.boot: uefi (or DEPLOY_BOOT=uefi) to boot the blog locally")

var errNoFirmware = errors.New("run: no OVMF UEFI firmware found (looked for /usr/share/OVMF/OVMF_CODE_4M.fd and /usr/share/ovmf/OVMF.fd); install it with `apt-get install ovmf`")

// QemuCommand builds the QEMU command line that boots o.Image. It checks
// which firmware exists but starts nothing, so tests can inspect it.
func QemuCommand(o QemuOptions) (*Qemu, error) {
	switch o.Layout {
	case uefi.Name, host.Name: // both are GPT + ESP + GRUB EFI
	case pvgrub.Name:
		return nil, ErrCannotRunPVGrub
	default:
		return nil, fmt.Errorf("run: cannot boot a %q image locally; only %s images run under QEMU", o.Layout, uefi.Name)
	}
	if o.Serial == "" {
		o.Serial = "mon:stdio"
	}
	if o.HostPort == 0 {
		o.HostPort = 8080
	}
	if o.Memory == "" {
		o.Memory = "512M"
	}
	candidates := o.Firmware
	if candidates == nil {
		candidates = DefaultFirmware
	}
	var fw *Firmware
	for i := range candidates {
		c := candidates[i]
		if exists(c.Code) && (c.Vars == "" || exists(c.Vars)) {
			fw = &c
			break
		}
	}
	if fw == nil {
		return nil, errNoFirmware
	}
	kvm := KVMUsable()
	if o.KVM != nil {
		kvm = *o.KVM
	}
	q := &Qemu{Path: QEMU, KVM: kvm}
	if kvm {
		q.Args = append(q.Args, "-enable-kvm", "-cpu", "host")
	} else {
		// max: every feature QEMU emulates, RDRAND among them, which seeds
		// the guest kernel's random number generator as EC2's CPUs do.
		q.Args = append(q.Args, "-accel", "tcg", "-cpu", "max")
	}
	q.Args = append(q.Args, "-m", o.Memory)
	if fw.Vars != "" {
		if o.VarsCopy == "" {
			return nil, errors.New("run: VarsCopy must name where the OVMF variables copy goes")
		}
		q.VarsFrom, q.VarsTo = fw.Vars, o.VarsCopy
		q.Args = append(q.Args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+fw.Code,
			"-drive", "if=pflash,format=raw,unit=1,file="+o.VarsCopy)
	} else {
		q.Args = append(q.Args, "-bios", fw.Code)
	}
	q.Args = append(q.Args,
		// snapshot=on: the guest's writes go to a temporary overlay, so the
		// image keeps the bytes its digest (and Bake's AMI) name.
		"-drive", "file="+o.Image+",format=raw,if=virtio,snapshot=on",
		"-nic", nic(o.HostPort, o.HostTLSPort),
		// An entropy source, as EC2's RDRAND is: the host image's init then
		// never waits for the kernel's random number generator.
		"-device", "virtio-rng-pci",
		"-nographic", "-serial", o.Serial,
		"-no-reboot",
	)
	q.Args = append(q.Args, o.Extra...)
	return q, nil
}

// Command prepares the firmware variables and returns the command to run.
func (q *Qemu) Command(ctx context.Context) (*exec.Cmd, error) {
	if _, err := exec.LookPath(q.Path); err != nil {
		return nil, fmt.Errorf("run: %s not found; install it with `apt-get install qemu-system-x86`", q.Path)
	}
	if q.VarsFrom != "" {
		if err := receipt.CopyFile(q.VarsFrom, q.VarsTo); err != nil {
			return nil, fmt.Errorf("run: copying the OVMF variables: %w", err)
		}
	}
	return exec.CommandContext(ctx, q.Path, q.Args...), nil
}

// KVMUsable reports whether /dev/kvm can be opened for hardware
// virtualisation; without it QEMU emulates the CPU (slower, still fine).
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// nic is QEMU's user network with the guest's web ports forwarded.
func nic(http, https int) string {
	n := "user,model=virtio-net-pci,hostfwd=tcp::" + strconv.Itoa(http) + "-:80"
	if https != 0 {
		n += ",hostfwd=tcp::" + strconv.Itoa(https) + "-:443"
	}
	return n
}

// RunOptions are what `mage run` needs.
type RunOptions struct {
	BuildDir string
	HostPort int // the guest's port 80; 0 means 8080
	TLSPort  int // the guest's port 443; 0 means 8443
	Log      *logrus.Entry
}

// Run boots the image from the Image step's receipt in QEMU, with the serial
// console on this terminal, until QEMU exits or ctx ends.
func Run(ctx context.Context, o RunOptions) error {
	r, err := ReadReceipt(o.BuildDir)
	if err != nil {
		return err
	}
	q, err := QemuCommand(QemuOptions{
		Image:       r.Path,
		Layout:      r.Layout,
		VarsCopy:    filepath.Join(o.BuildDir, "ovmf-vars.fd"),
		HostPort:    o.HostPort,
		HostTLSPort: cmp.Or(o.TLSPort, 8443),
	})
	if err != nil {
		return err
	}
	cmd, err := q.Command(ctx)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if o.Log != nil {
		accel := "software emulation (no usable /dev/kvm)"
		if q.KVM {
			accel = "KVM"
		}
		port := o.HostPort
		if port == 0 {
			port = 8080
		}
		o.Log.WithFields(logrus.Fields{"layout": r.Layout, "digest": r.Digest}).Infof(
			"booting %s with %s; once it is up the blog answers at http://localhost:%d and, with https, at https://localhost:%d "+
				"(its certificate names the domain: curl --resolve DOMAIN:%d:127.0.0.1 https://DOMAIN:%d/, or accept the warning); quit with Ctrl-A X",
			r.Path, accel, port, cmp.Or(o.TLSPort, 8443), cmp.Or(o.TLSPort, 8443), cmp.Or(o.TLSPort, 8443))
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run: %s: %w", QEMU, err)
	}
	return nil
}

func exists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
