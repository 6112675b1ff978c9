package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	good := []Config{
		{Payload: PayloadStatic, Static: &Static{Root: "/srv/site", Port: 80}},
		{Payload: PayloadSPT, SPT: &SPT{Tender: "/bin/solo5-spt", Kernel: "/srv/unikernel.spt", Ports: []int{80}}},
	}
	for _, c := range good {
		if err := c.Check(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []Config{
		{},
		{Payload: "shell"},
		{Payload: PayloadStatic},
		{Payload: PayloadStatic, Static: &Static{Root: "/srv/site"}},
		{Payload: PayloadSPT, SPT: &SPT{Tender: "/bin/solo5-spt"}},
		{Payload: PayloadStatic, Static: &Static{Root: "/srv/site", Port: 80}, Modules: []Module{{Name: "virtio_net", Path: "/v.ko", Depends: []string{"virtio"}}, {Name: "virtio", Path: "/w.ko"}}},
		{Payload: PayloadStatic, Static: &Static{Root: "/srv/site", Port: 80}, Modules: []Module{{Name: "virtio"}}},
	}
	for _, c := range bad {
		if err := c.Check(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hostinit.json")
	os.WriteFile(p, []byte(`{"payload":"static","static":{"root":"/srv/site","port":80,"modified":1700000000},"modules":[{"name":"a","path":"/lib/modules/x/a.ko","aliases":["pci:v*"]}]}`), 0o644)
	c, err := Read(p)
	if err != nil || c.Static.Modified != 1700000000 || len(c.Modules) != 1 || c.Modules[0].Aliases[0] != "pci:v*" {
		t.Errorf("%+v %v", c, err)
	}
	os.WriteFile(p, []byte(`{"payload":`), 0o644)
	if _, err := Read(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("bad JSON: %v", err)
	}
}
