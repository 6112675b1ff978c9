package image

import (
	"sort"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/host"
	"github.com/unikernel-blog/blog/magefiles/image/layout/pvgrub"
	"github.com/unikernel-blog/blog/magefiles/image/layout/uefi"
)

// layouts are the boot layouts by deploy.boot value. A new layout is a package
// under layout/ and one line here.
var layouts = map[string]func(layout.Env) (layout.Layout, error){
	host.Name:   host.New,
	uefi.Name:   uefi.New,
	pvgrub.Name: pvgrub.New,
}

// Layouts lists the layout names the Image step can write.
func Layouts() []string {
	names := make([]string, 0, len(layouts))
	for n := range layouts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
