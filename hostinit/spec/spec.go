// Package spec is the contract between the Image step's host layout, which
// writes /etc/hostinit.json into the initramfs, and the init that reads it at
// boot. It has no dependencies, so both sides can import it.
package spec

import (
	"encoding/json"
	"fmt"
	"os"
)

// Path is where the configuration lives in the initramfs.
const Path = "/etc/hostinit.json"

// Payloads the init can run.
const (
	PayloadStatic = "static" // the init serves the site itself
	PayloadSPT    = "spt"    // the Mirage unikernel under solo5-spt
)

// Config is what the init does at boot.
type Config struct {
	// KernelRelease is the kernel the modules were built for (uname -r).
	KernelRelease string `json:"kernel_release"`
	// Modules are the kernel modules the image carries, dependencies
	// first. The init loads those that drive a device present (or are
	// marked Always), each after its dependencies.
	Modules []Module `json:"modules"`
	// BuildID is the site build the image serves, for the console log.
	BuildID string  `json:"build_id,omitempty"`
	Payload string  `json:"payload"`
	Static  *Static `json:"static,omitempty"`
	SPT     *SPT    `json:"spt,omitempty"`
}

// Module is one kernel module file in the initramfs.
type Module struct {
	Name string `json:"name"` // as the kernel spells it: virtio_net, xen_netfront
	Path string `json:"path"` // absolute in the initramfs
	// Depends are the modules it needs loaded first (its depends= field);
	// each comes earlier in Config.Modules.
	Depends []string `json:"depends,omitempty"`
	// Aliases are the devices it drives: its alias= fields, the patterns
	// modules.alias holds (e.g. virtio:d00000001v*), matched with shell
	// wildcards against each present device's modalias as modprobe does.
	Aliases []string `json:"aliases,omitempty"`
	// Always loads it whatever devices are present: the tender's tun and
	// nftables modules drive no device.
	Always bool `json:"always,omitempty"`
}

// Static configures the built-in static server.
type Static struct {
	Root string `json:"root"` // the site's files
	Port int    `json:"port"` // usually 80
	// Modified is the Last-Modified time of every file (Unix seconds): the
	// initramfs's own mtimes are fixed for reproducibility, so the layout
	// records the site's build time here.
	Modified int64 `json:"modified"`
	// TLS, when set, serves HTTPS on TLS.Port and redirects Port to it.
	TLS *TLS `json:"tls,omitempty"`
}

// TLS is the certificate and how the static server uses it.
type TLS struct {
	Chain      string   `json:"chain"` // PEM chain, leaf first
	Key        string   `json:"key"`   // PEM private key (mode 0600 in the initramfs)
	Port       int      `json:"port"`  // usually 443
	Domain     string   `json:"domain"`
	Aliases    []string `json:"aliases,omitempty"`
	HSTSMaxAge int64    `json:"hsts_max_age"`
}

// SPT configures the Mirage payload.
type SPT struct {
	Tender string `json:"tender"`  // solo5-spt
	Kernel string `json:"kernel"`  // the unikernel, <name>.spt
	Ports  []int  `json:"ports"`   // TCP ports forwarded from the NIC to the unikernel
	MemMiB int    `json:"mem_mib"` // the unikernel's memory (solo5-spt --mem)
	// LibraryPath is the tender's LD_LIBRARY_PATH: where the image keeps
	// the shared libraries a dynamically linked solo5-spt needs ("" for a
	// static one).
	LibraryPath string `json:"library_path,omitempty"`
}

// Read loads and checks the configuration at path.
func Read(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, c.Check()
}

// Check reports a configuration the init cannot run.
func (c *Config) Check() error {
	switch c.Payload {
	case PayloadStatic:
		if c.Static == nil || c.Static.Root == "" || c.Static.Port <= 0 {
			return fmt.Errorf("payload static needs static.root and static.port")
		}
		if t := c.Static.TLS; t != nil && (t.Chain == "" || t.Key == "" || t.Port <= 0 || t.Domain == "") {
			return fmt.Errorf("static.tls needs chain, key, port and domain")
		}
	case PayloadSPT:
		if c.SPT == nil || c.SPT.Tender == "" || c.SPT.Kernel == "" || len(c.SPT.Ports) == 0 {
			return fmt.Errorf("payload spt needs spt.tender, spt.kernel and spt.ports")
		}
	default:
		return fmt.Errorf("unknown payload %q; want %s or %s", c.Payload, PayloadStatic, PayloadSPT)
	}
	seen := map[string]bool{}
	for _, m := range c.Modules {
		if m.Name == "" || m.Path == "" {
			return fmt.Errorf("module %+v needs a name and a path", m)
		}
		for _, d := range m.Depends {
			if !seen[d] {
				return fmt.Errorf("module %s depends on %s, which does not come before it", m.Name, d)
			}
		}
		seen[m.Name] = true
	}
	return nil
}
