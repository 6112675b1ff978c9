package image

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

// multibootKernel assembles a tiny multiboot kernel: it writes marker to COM1
// and exits QEMU through the isa-debug-exit device.
func multibootKernel(t *testing.T, marker string) string {
	t.Helper()
	as := testtool.Need(t, "as", "binutils")
	ld := testtool.Need(t, "ld", "binutils")
	dir := t.TempDir()
	src := `
	.text
	.code32
	.align 4
	# Multiboot header (magic, flags, checksum): GRUB looks for it in the
	# first 8 KiB and, with flags 0, loads the ELF by its program headers.
	.long 0x1BADB002
	.long 0
	.long -0x1BADB002
	.globl _start
_start:
	mov $msg, %esi
1:	lodsb
	test %al, %al
	jz 2f
	mov $0x3f8, %dx      # COM1 data port; QEMU needs no UART setup
	out %al, %dx
	jmp 1b
2:	mov $0xf4, %dx       # isa-debug-exit: QEMU exits with (0x10<<1)|1 = 33
	mov $0x10, %al
	out %al, %dx
3:	hlt
	jmp 3b
msg:	.asciz "` + marker + `\r\n"
`
	if err := os.WriteFile(filepath.Join(dir, "k.S"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, as, "--32", "-o", filepath.Join(dir, "k.o"), filepath.Join(dir, "k.S"))
	kernel := filepath.Join(dir, "kernel")
	run(t, nil, ld, "-m", "elf_i386", "-Ttext", "0x100000", "-e", "_start", "-o", kernel, filepath.Join(dir, "k.o"))
	return kernel
}

// TestUEFIImageBootsInQEMU is the proof the uefi layout works: OVMF finds
// BOOTX64.EFI on the ESP, GRUB finds the kernel and multiboots it, and the
// kernel's marker reaches the serial console. Software emulation, so it runs
// anywhere; the command line is the one `mage run` uses.
func TestUEFIImageBootsInQEMU(t *testing.T) {
	needGRUB(t)
	testtool.Need(t, QEMU, "qemu-system-x86")
	const marker = "HELLO-FROM-THE-MULTIBOOT-TEST-KERNEL"
	dir := t.TempDir()
	r, err := Build(context.Background(), Options{BuildDir: dir, Layout: "uefi", Size: 64 * mib, Kernel: multibootKernel(t, marker)})
	if err != nil {
		t.Fatal(err)
	}
	serial := filepath.Join(dir, "serial.log")
	no := false
	q, err := QemuCommand(QemuOptions{
		Image:    r.Path,
		Layout:   r.Layout,
		VarsCopy: filepath.Join(dir, "vars.fd"),
		Serial:   "file:" + serial,
		HostPort: freePort(t),
		KVM:      &no,
		Extra:    []string{"-monitor", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"},
	})
	if errors.Is(err, errNoFirmware) {
		testtool.Missing(t, "OVMF not found: install the Debian package ovmf to run this test")
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd, err := q.Command(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(serial)
	if !strings.Contains(string(log), marker) {
		t.Fatalf("the marker never reached the serial console (qemu: %v; %s)\nserial log:\n%s", err, out, tail(string(log), 3000))
	}
	// isa-debug-exit made QEMU exit with (0x10<<1)|1.
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 33 {
		t.Errorf("qemu ended with %v; want exit status 33 from the kernel's isa-debug-exit write", err)
	}
	if !strings.Contains(string(log), "GRUB") {
		t.Errorf("GRUB's banner is missing from the serial console:\n%s", tail(string(log), 3000))
	}
}

func TestQemuCommand(t *testing.T) {
	dir := t.TempDir()
	code, vars, bios := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd"), filepath.Join(dir, "OVMF.fd")
	for _, f := range []string{code, vars, bios} {
		if err := os.WriteFile(f, []byte("fw"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	yes, no := true, false
	pair := []Firmware{{Code: filepath.Join(dir, "missing.fd"), Vars: vars}, {Code: code, Vars: vars}, {Code: bios}}

	q, err := QemuCommand(QemuOptions{Image: "/b/disk.img", Layout: "uefi", VarsCopy: "/b/vars.fd", Firmware: pair, KVM: &yes})
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(q.Args, " ")
	for _, want := range []string{
		"-enable-kvm -cpu host",
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive if=pflash,format=raw,unit=1,file=/b/vars.fd",
		"-drive file=/b/disk.img,format=raw,if=virtio,snapshot=on",
		"-nic user,model=virtio-net-pci,hostfwd=tcp::8080-:80",
		"-device virtio-rng-pci",
		"-nographic -serial mon:stdio",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("KVM, pflash pair: args %q lack %q", args, want)
		}
	}
	if q.Path != QEMU || q.VarsFrom != vars || q.VarsTo != "/b/vars.fd" || !q.KVM {
		t.Errorf("got %+v; want qemu-system-x86_64 with the variables copied from %s", q, vars)
	}

	q, err = QemuCommand(QemuOptions{Image: "/b/disk.img", Layout: "uefi", Firmware: []Firmware{{Code: bios}}, KVM: &no, HostPort: 9090, HostTLSPort: 9443})
	if err != nil {
		t.Fatal(err)
	}
	args = strings.Join(q.Args, " ")
	if !strings.Contains(args, "-accel tcg -cpu max") || strings.Contains(args, "kvm") || !strings.Contains(args, "-bios "+bios) || !strings.Contains(args, "hostfwd=tcp::9090-:80,hostfwd=tcp::9443-:443") || q.VarsFrom != "" {
		t.Errorf("no KVM, combined firmware: args %q; want -accel tcg -cpu max, -bios and ports 9090 and 9443", args)
	}
	if slices.Contains(q.Args, "-enable-kvm") {
		t.Error("KVM asked for without KVM")
	}

	if _, err := QemuCommand(QemuOptions{Image: "/b/disk.img", Layout: "uefi", Firmware: []Firmware{{Code: filepath.Join(dir, "none.fd")}}}); !errors.Is(err, errNoFirmware) || !strings.Contains(err.Error(), "apt-get install ovmf") {
		t.Errorf("no firmware: err %v; want advice to install ovmf", err)
	}
	if _, err := QemuCommand(QemuOptions{Image: "/b/disk.img", Layout: "pvgrub"}); !errors.Is(err, ErrCannotRunPVGrub) || !strings.Contains(err.Error(), "PV-GRUB") || !strings.Contains(err.Error(), "boot: uefi") {
		t.Errorf("pvgrub: err %v; want it to say QEMU has no PV-GRUB and how to run locally", err)
	}
}

func TestRunWithoutImage(t *testing.T) {
	err := Run(context.Background(), RunOptions{BuildDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "mage image") {
		t.Fatalf("err %v; want advice to run mage image", err)
	}
}

// freePort finds a free local port for the forward, so the test does not
// collide with a `mage run` on 8080.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
