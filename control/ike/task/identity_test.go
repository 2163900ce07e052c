package task

import (
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
)

// TestSameIdentity: a peer identity that is the configured one, in its
// bytes and its text, is the configuration's (shared by every IKE SA of
// the connection); another one, a wildcard's match or the same name
// configured as "@name", stays the peer's own.
func TestSameIdentity(t *testing.T) {
	peer := WireIdentity(&message.ID{IDType: message.IDFQDN, Data: []byte("gw-a.example")})
	for _, c := range []struct {
		cfg  string
		same bool
	}{{"gw-a.example", true}, {"*.example", false}, {"@gw-a.example", false}, {"gw-b.example", false}} {
		cfg, err := config.ParseIdentity(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := sameIdentity(peer, cfg)
		if shared := &got.Data[0] == &cfg.Data[0]; shared != c.same {
			t.Errorf("%s: shares the configuration's bytes %v, want %v", c.cfg, shared, c.same)
		}
		if got.Type != peer.Type || string(got.Data) != string(peer.Data) || got.Text != peer.Text {
			t.Errorf("%s: %+v, want the peer's %+v", c.cfg, got, peer)
		}
	}
}
