package unikernel

import (
	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/receipt"
)

// ReceiptName is the receipt's file name under _build/ (without .json).
const ReceiptName = "unikernel"

// Receipt records the kernel the Unikernel step produced or was given.
type Receipt struct {
	Kernel        string            `json:"kernel"`                   // absolute path of the kernel file; "" for mirage_target: none
	KernelSHA256  string            `json:"kernel_sha256"`            // hex SHA-256 of the kernel
	Target        string            `json:"target"`                   // mirage configure -t target; "prebuilt" when UNIKERNEL was used
	Prebuilt      bool              `json:"prebuilt"`                 // true when UNIKERNEL named the kernel
	BuildID       string            `json:"build_id"`                 // the site build the kernel serves (from the Site step's receipt); for a prebuilt kernel only when it carries that build's id, else ""
	Commit        string            `json:"commit"`                   // the repository's commit, from the Site step's receipt
	MirageVersion string            `json:"mirage_version,omitempty"` // `mirage --version` of the build
	Inputs        map[string]string `json:"inputs"`                   // input name → hash, for skipping unchanged work
	Commands      []string          `json:"commands"`                 // the commands run, in order, in MirageDir
	// TLS is the certificate the site is served with, from the Cert step;
	// nil with https off. The Mirage kernel has it crunched in; the host
	// image's own server takes it from here.
	TLS *cert.TLS `json:"tls,omitempty"`
}

// ReadReceipt loads _build/unikernel.json; it fails with the fix when the step has not run.
func ReadReceipt(buildDir string) (*Receipt, error) {
	return receipt.Load[Receipt](buildDir, ReceiptName, "unikernel", "no kernel built", "run `mage unikernel`, or set UNIKERNEL=/path/to/kernel")
}
