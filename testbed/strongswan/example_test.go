package strongswan_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
	"github.com/spugate/spugate/testbed/strongswan"
)

// An interop test runs charon on gw-b with a certificate from a lab CA
// and waits for the peer on gw-a (here nothing: the example only shows
// the calls) to bring the tunnel up.
func Example() {
	var t *testing.T // the test's
	strongswan.Require(t)
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})

	p, _ := strongswan.NewPKI(t.TempDir())
	ca, _ := p.NewCA("root", strongswan.CertOptions{Key: strongswan.ECDSA256})
	gw, _ := p.NewCert("gw-b", ca, strongswan.CertOptions{
		Key: strongswan.ECDSA256, SANs: []string{strongswan.IDGwB}, Flags: []string{"serverAuth"}})

	conn, _ := strongswan.LineConn(ln, ln.GwB, strongswan.LineConnOptions{})
	conn.Proposals = []string{"aes128gcm16-prfsha256-x25519"}
	conn.Children[0].ESPProposals = []string{"aes128gcm16"}
	cfg := strongswan.Config{Dir: ln.LogDir, Conns: []strongswan.Conn{conn}, DumpKeys: true}
	cfg.Conns[0].Local.Auth, cfg.Conns[0].Remote.Auth = "pubkey", "pubkey"
	cfg.Conns[0].Local.Certs = []string{cfg.Files.AddIdentity(gw)}
	cfg.Conns[0].Remote.CACerts = []string{cfg.Files.AddCA(ca)}

	c, err := strongswan.Start(ln.GwB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	sa, err := c.WaitEstablished("site", "net", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, children, _ := c.Keys()
	fmt.Println(sa.Child("net").EncrAlg, len(children))
}
