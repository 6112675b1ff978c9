package boot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unikernel-blog/blog/hostinit/spec"
)

// Devices returns the modalias of every device the kernel has found on the
// given buses (every bus when buses is nil), read from sysfs (sys is /sys):
// what udev would hand modprobe. A bus driver, once loaded, adds
// devices of its own (virtio_pci adds the virtio devices), so this is read
// again after each round of loading.
func Devices(sys string, buses []string) []string {
	if buses == nil {
		entries, _ := os.ReadDir(filepath.Join(sys, "bus"))
		for _, e := range entries {
			buses = append(buses, e.Name())
		}
	}
	var out []string
	for _, bus := range buses {
		dir := filepath.Join(sys, "bus", bus, "devices")
		devs, _ := os.ReadDir(dir)
		for _, d := range devs {
			b, err := os.ReadFile(filepath.Join(dir, d.Name(), "modalias"))
			if err != nil {
				continue // no alias to read, or the device went away
			}
			if a := strings.TrimSpace(string(b)); a != "" {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Buses are the buses whose devices the modules can drive: a device alias
// starts with its bus (pci:, virtio:, xen:), and a bus this kernel does not
// have (xen off Xen, virtio before its module loads) has no devices. Modules loaded always are left out:
// their aliases name character devices and protocols, not hardware. Reading
// three buses costs a few milliseconds under emulation; reading every bus,
// hundreds.
func Buses(mods []spec.Module, sys string) []string {
	var buses []string
	for _, m := range mods {
		if m.Always {
			continue
		}
		for _, a := range m.Aliases {
			bus, _, ok := strings.Cut(a, ":")
			if !ok || slices.Contains(buses, bus) {
				continue // a name, not a device pattern (xen-netfront's "xennet"), or known
			}
			if st, err := os.Stat(filepath.Join(sys, "bus", bus, "devices")); err == nil && st.IsDir() {
				buses = append(buses, bus)
			}
		}
	}
	slices.Sort(buses)
	return buses
}

// Drives returns the first present device one of the module's aliases
// matches, as modprobe matches modules.alias: shell wildcards (path.Match;
// a modalias holds no '/', so its one difference from fnmatch does not
// arise).
func Drives(m spec.Module, devices []string) (string, bool) {
	for _, d := range devices {
		for _, a := range m.Aliases {
			if ok, _ := path.Match(a, d); ok {
				return d, true
			}
		}
	}
	return "", false
}

// Pick is a module chosen to load, and why.
type Pick struct {
	spec.Module
	Why string // "device <modalias>", "always", or "for <module>"
}

// Plan chooses what to load for the devices present: the modules marked
// Always, those driving a device, and what they depend on, leaving out what
// is loaded already. Picks come in the image's order, dependencies first.
func Plan(mods []spec.Module, devices []string, loaded map[string]bool) []Pick {
	byName := map[string]spec.Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	why := map[string]string{}
	var want func(name, reason string)
	want = func(name, reason string) {
		if loaded[name] || why[name] != "" {
			return
		}
		m, ok := byName[name]
		if !ok {
			return // spec.Check saw every dependency in the image
		}
		why[name] = reason
		for _, d := range m.Depends {
			want(d, "for "+name)
		}
	}
	for _, m := range mods {
		if m.Always {
			want(m.Name, "always")
		} else if d, ok := Drives(m, devices); ok {
			want(m.Name, "device "+d)
		}
	}
	var picks []Pick
	for _, m := range mods {
		if why[m.Name] != "" {
			picks = append(picks, Pick{m, why[m.Name]})
		}
	}
	return picks
}

// LoadResult says what happened to one module.
type LoadResult struct {
	Pick
	Took time.Duration
	Err  error // nil when loaded or already present
	// NoDevice is true when the module refused to load because its hardware
	// or hypervisor is absent: expected, not a fault.
	NoDevice bool
}

// Loader loads one module file; FinitModule is the real one.
type Loader func(path string) error

// Load loads the picks, each as soon as its dependencies have loaded, so
// modules that do not depend on each other load at once (module loading is
// mostly signature checking and relocation, which the kernel runs in
// parallel). A module whose dependency failed, in this call or before, is
// not tried. loaded is read before and written after the loads. Results
// come in the picks' order.
func Load(picks []Pick, loaded map[string]bool, load Loader) []LoadResult {
	res := make([]LoadResult, len(picks))
	done := map[string]chan struct{}{}
	for _, p := range picks {
		done[p.Name] = make(chan struct{})
	}
	failed := sync.Map{}
	var wg sync.WaitGroup
	for i, p := range picks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[p.Name])
			res[i].Pick = p
			for _, d := range p.Depends {
				ch, inBatch := done[d]
				if inBatch {
					<-ch
				}
				if _, bad := failed.Load(d); bad || (!inBatch && !loaded[d]) {
					res[i].Err = fmt.Errorf("not loaded: it needs %s, which failed", d)
					failed.Store(p.Name, true)
					return
				}
			}
			start := time.Now()
			err := load(p.Path)
			res[i].Took = time.Since(start)
			switch {
			case err == nil, errors.Is(err, unix.EEXIST):
			case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
				res[i].NoDevice, res[i].Err = true, err
				failed.Store(p.Name, true)
			default:
				res[i].Err = err
				failed.Store(p.Name, true)
			}
		}()
	}
	wg.Wait()
	for _, r := range res {
		if r.Err == nil {
			loaded[r.Name] = true
		}
	}
	return res
}

// LoadForDevices loads what the devices present need, in rounds: after each,
// the devices are read again, since a bus driver adds devices (virtio_pci
// the virtio NIC and entropy source) that the next round matches. It stops
// when a round finds nothing new to load. logf, if not nil, hears about each
// round.
func LoadForDevices(mods []spec.Module, sys string, load Loader, logf func(format string, args ...any)) []LoadResult {
	loaded := map[string]bool{}
	tried := map[string]bool{}
	var all []LoadResult
	for round := 1; round <= len(mods)+1; round++ {
		start := time.Now()
		// Again each round: a bus appears with its module (virtio).
		buses := Buses(mods, sys)
		if buses == nil {
			buses = []string{} // no bus to read, rather than every bus
		}
		devices := Devices(sys, buses)
		var picks []Pick
		var names []string
		for _, p := range Plan(mods, devices, loaded) {
			if !tried[p.Name] {
				picks = append(picks, p)
				names = append(names, p.Name)
				tried[p.Name] = true
			}
		}
		if len(picks) == 0 {
			break
		}
		if logf != nil {
			logf("  round %d: %d devices on %s read in %s; loading %s", round, len(devices), busList(buses), time.Since(start).Round(time.Millisecond), strings.Join(names, " "))
		}
		all = append(all, Load(picks, loaded, load)...)
	}
	return all
}

func busList(buses []string) string {
	if len(buses) == 0 {
		return "no bus"
	}
	return strings.Join(buses, ", ")
}

// FinitModule loads a module file with finit_module, or init_module on
// kernels without it.
func FinitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			b, rerr := os.ReadFile(path)
			if rerr != nil {
				return rerr
			}
			return unix.InitModule(b, "")
		}
		return err
	}
	return nil
}
