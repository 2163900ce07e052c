package task

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/ts"
	"github.com/spugate/spugate/dataplane/api"
)

// NamePrefix starts the name of every SA and policy iked installs, so that
// its restart sweep never touches what someone else (spuctl) installed.
const NamePrefix = "iked/"

// SAName names a Child SA's SAs and policies in the data plane:
// iked/<conn>/<child>/<unique id>.
func SAName(conn, child string, id uint32) string {
	return fmt.Sprintf("%s%s/%s/%d", NamePrefix, conn, child, id)
}

// TrapName names a trap policy: iked/<conn>/<child>/trap.
func TrapName(conn, child string) string { return fmt.Sprintf("%s%s/%s/trap", NamePrefix, conn, child) }

// DataPlaneSuite names an ESP suite the way the data plane does.
func DataPlaneSuite(a suite.Algorithms) (string, error) {
	switch {
	case a.Encr == suite.EncrAESGCM16 && a.EncrKeyBits == 128:
		return api.SuiteAES128GCM16, nil
	case a.Encr == suite.EncrAESGCM16 && a.EncrKeyBits == 256:
		return api.SuiteAES256GCM16, nil
	case a.Encr == suite.EncrChaCha20Poly1305:
		return api.SuiteChaCha20Poly1305, nil
	case a.Encr == suite.EncrAESCBC && a.EncrKeyBits == 128 && a.Integ == suite.IntegHMACSHA256128:
		return api.SuiteAES128SHA256, nil
	case a.Encr == suite.EncrAESCBC && a.EncrKeyBits == 256 && a.Integ == suite.IntegHMACSHA256128:
		return api.SuiteAES256SHA256, nil
	}
	return "", fmt.Errorf("ESP suite %s is not one the data plane implements", a)
}

// ChildSAs returns the data plane's view of a Child SA: inbound and
// outbound SA, keys included.
func ChildSAs(ike *sa.IKESA, ch *sa.ChildSA, cc *config.Child, name string) (in, out *api.SA, err error) {
	suiteName, err := DataPlaneSuite(ch.Alg)
	if err != nil {
		return nil, nil, err
	}
	if ch.Keys == nil {
		return nil, nil, errors.New("child sa has no keys")
	}
	inE, inI := ch.Keys.Inbound(ch.Initiator)
	outE, outI := ch.Keys.Outbound(ch.Initiator)
	mk := func(spi uint32, dir api.Dir, enc, integ []byte) *api.SA {
		s := &api.SA{SPI: spi, Dir: dir, Local: ike.Local.Addr(), Remote: ike.Remote.Addr(), Mode: api.Tunnel,
			Suite: suiteName, EncKey: enc, IntegKey: integ, ESN: ch.Alg.ESN, ReqID: ch.ReqID,
			LocalTS: ts.ToAPI(ch.LocalTS), RemoteTS: ts.ToAPI(ch.RemoteTS), Name: name}
		if len(s.IntegKey) == 0 {
			s.IntegKey = nil
		}
		if ch.Encap {
			s.Encap = &api.Encap{LocalPort: ike.Local.Port(), RemotePort: ike.Remote.Port()}
		}
		if cc != nil {
			if cc.ReplayWindow != nil && dir == api.In {
				if *cc.ReplayWindow == 0 {
					s.ReplayWindow = -1
				} else {
					s.ReplayWindow = *cc.ReplayWindow
				}
			}
			s.Lifetime = api.Lifetime{SoftBytes: uint64(cc.RekeyBytes), HardBytes: uint64(cc.LifeBytes),
				SoftPackets: uint64(cc.RekeyPackets), HardPackets: uint64(cc.LifePackets)}
		}
		return s
	}
	return mk(ch.SPIIn, api.In, inE, inI), mk(ch.SPIOut, api.Out, outE, outI), nil
}

// Install puts a negotiated Child SA into the data plane: the inbound SA
// first (so that the peer's first packets find it), then the outbound SA,
// then its policy, unless a trap policy with the same selectors already
// carries its reqid. On error nothing of it stays installed.
func Install(c *Ctx, conn *config.Conn, cc *config.Child, ch *sa.ChildSA) error {
	ike := c.IKE
	if ch.UniqueID == 0 {
		ch.UniqueID = c.NewID()
	}
	sib := sibling(ike, ch)
	if sib != nil {
		// A Child SA of the same child with the same selectors (its
		// replacement, or one the peer created next to it) shares its reqid
		// and takes its policy over: the data plane sends through the
		// newest outbound SA of a reqid, and the policy must outlive the
		// older Child SA's deletion.
		ch.ReqID, ch.Trap = sib.ReqID, sib.Trap
	} else if tr, ok := c.Trap(conn.Name, cc.Name); ok && ts.Equal(tr.LocalTS, ch.LocalTS) && ts.Equal(tr.RemoteTS, ch.RemoteTS) {
		ch.ReqID, ch.Trap = tr.ReqID, true
	} else if ch.ReqID == 0 {
		ch.ReqID = c.NewReqID()
	}
	name := SAName(conn.Name, cc.Name, ch.UniqueID)
	in, out, err := ChildSAs(ike, ch, cc, name)
	if err != nil {
		return err
	}
	dp := c.DataPlane()
	if err := dp.AddSA(in); err != nil {
		return fmt.Errorf("install inbound sa 0x%08x: %w", in.SPI, err)
	}
	if !ch.OutPending {
		if err := dp.AddSA(out); err != nil {
			dp.DelSA(api.SAID{SPI: in.SPI, Dir: api.In})
			return fmt.Errorf("install outbound sa 0x%08x: %w", out.SPI, err)
		}
	}
	if sib != nil {
		ch.PolicyIDs, sib.PolicyIDs = sib.PolicyIDs, nil
	}
	if !ch.Trap && len(ch.PolicyIDs) == 0 {
		id, err := dp.AddPolicy(&api.Policy{ReqID: ch.ReqID, Action: api.Protect, Local: ike.Local.Addr(), Remote: ike.Remote.Addr(),
			LocalTS: in.LocalTS, RemoteTS: in.RemoteTS, Name: name})
		if err != nil {
			dp.DelSA(api.SAID{SPI: out.SPI, Dir: api.Out, Remote: out.Remote})
			dp.DelSA(api.SAID{SPI: in.SPI, Dir: api.In})
			return fmt.Errorf("install policy %s === %s: %w", ts.Strings(ch.LocalTS), ts.Strings(ch.RemoteTS), err)
		}
		ch.PolicyIDs = append(ch.PolicyIDs, id)
	}
	now := c.Now()
	ch.State = sa.ChildInstalled
	ch.Installed = now
	if cc.RekeyTime != nil && *cc.RekeyTime > 0 {
		ch.RekeyAt = now.Add(cc.RekeyTime.D() - jitter(c.Rand(), cc.RandTime))
	}
	if cc.LifeTime != nil && *cc.LifeTime > 0 {
		ch.ExpireAt = now.Add(cc.LifeTime.D())
	}
	c.Stats().Inc(stats.ChildSAsInstalled)
	return nil
}

// OutPendingDelay bounds how long the responder of a rekey waits for the
// initiator's DELETE of the old Child SA before it sends through the new
// one anyway.
const OutPendingDelay = 10 * time.Second

// InstallOutbound installs the outbound SA of a Child SA whose outbound
// was held back (OutPending); from then on the data plane sends through it.
func InstallOutbound(c *Ctx, ch *sa.ChildSA) error {
	if !ch.OutPending || ch.State == sa.ChildDeleted {
		return nil
	}
	var cc *config.Child
	conn := c.Conn()
	if conn != nil {
		cc = conn.Children[ch.Name]
	}
	connName := c.IKE.ConnName
	_, out, err := ChildSAs(c.IKE, ch, cc, SAName(connName, ch.Name, ch.UniqueID))
	if err != nil {
		return err
	}
	if err := c.DataPlane().AddSA(out); err != nil {
		return fmt.Errorf("install outbound sa 0x%08x: %w", out.SPI, err)
	}
	ch.OutPending = false
	return nil
}

// sibling finds an installed Child SA of ike with the same child name and
// selectors as ch.
func sibling(ike *sa.IKESA, ch *sa.ChildSA) *sa.ChildSA {
	for _, o := range ike.Children {
		if o != ch && o.Name == ch.Name && (o.State == sa.ChildInstalled || o.State == sa.ChildRekeying) &&
			ts.Equal(o.LocalTS, ch.LocalTS) && ts.Equal(o.RemoteTS, ch.RemoteTS) {
			return o
		}
	}
	return nil
}

// jitter is a random duration in [0, max).
func jitter(r io.Reader, max *config.Duration) time.Duration {
	if max == nil || *max <= 0 {
		return 0
	}
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint64(b[:]) % uint64(*max))
}

// Uninstall removes a Child SA from the data plane: its policies first
// (cleartext stops being sent into it), then the outbound and the inbound
// SA. A trap's policy stays. Failures are returned joined; each removal is
// tried.
func Uninstall(dp DataPlane, ike *sa.IKESA, ch *sa.ChildSA) error {
	if ch.State == sa.ChildDeleted {
		return nil
	}
	var errs []error
	for _, id := range ch.PolicyIDs {
		if err := dp.DelPolicy(id); err != nil {
			errs = append(errs, fmt.Errorf("policy %d: %w", id, err))
		}
	}
	ch.PolicyIDs = nil
	if ch.SPIOut != 0 && !ch.OutPending {
		if err := dp.DelSA(api.SAID{SPI: ch.SPIOut, Dir: api.Out, Remote: ike.Remote.Addr()}); err != nil {
			errs = append(errs, fmt.Errorf("outbound sa 0x%08x: %w", ch.SPIOut, err))
		}
	}
	if ch.SPIIn != 0 {
		if err := dp.DelSA(api.SAID{SPI: ch.SPIIn, Dir: api.In}); err != nil {
			errs = append(errs, fmt.Errorf("inbound sa 0x%08x: %w", ch.SPIIn, err))
		}
	}
	ch.State = sa.ChildDeleted
	return errors.Join(errs...)
}
