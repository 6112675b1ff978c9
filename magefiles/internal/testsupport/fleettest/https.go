package fleettest

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"time"

	"github.com/unikernel-blog/blog/magefiles/cert"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/acmetest"
	"github.com/unikernel-blog/blog/magefiles/receipt"
	"github.com/unikernel-blog/blog/magefiles/site"
)

// HTTPS turns https on for the site with Pebble as its CA (the DNS server
// it asks answers from the emulator's zones), and makes the booted-instance
// stand-in serve TLS with the certificate the Cert step left in _build/cert,
// which is what the image would carry. The health gate then speaks TLS.
func (e *Env) HTTPS() *acmetest.CA {
	e.T.Helper()
	ca := acmetest.Start(e.T, e.H.Model, acmetest.Options{})
	e.C.HTTPS, e.C.ACMEDirectory, e.C.ACMERoots, e.C.ACMEResolvers, e.C.HSTSMaxAge = true, ca.Directory, ca.RootsFile, []string{ca.DNS}, 3600
	dir := cert.Dir(e.C.BuildDir())
	e.Builds.ServeTLS(e.T, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem"))
		return &c, err
	})
	e.C.HealthURL = e.Builds.HTTPSHealthURL()
	return ca
}

// Cert runs the Cert step for the site's build, as `mage cert` does after
// `mage site`.
func (e *Env) Cert(ctx context.Context, build string) (*cert.Receipt, error) {
	if err := receipt.Write(e.C.BuildDir(), site.ReceiptName, &site.Receipt{BuildID: build, Commit: "c0ffee" + build}); err != nil {
		return nil, err
	}
	return cert.Issue(ctx, cert.Options{Config: e.C, Log: e.Log, Poll: 20 * time.Millisecond, Propagation: 5 * time.Second, AWSOptions: e.LaunchOptions().AWSOptions})
}
