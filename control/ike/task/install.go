package task

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"io"
	"slices"
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

// DataPlaneSuite is the data plane's ESP suite of negotiated algorithms.
func DataPlaneSuite(a suite.Algorithms) (ipsec.Suite, error) {
	switch {
	case a.Encr == suite.EncrAESGCM16 && a.EncrKeyBits == 128:
		return ipsec.AES128GCM16, nil
	case a.Encr == suite.EncrAESGCM16 && a.EncrKeyBits == 256:
		return ipsec.AES256GCM16, nil
	case a.Encr == suite.EncrChaCha20Poly1305:
		return ipsec.ChaCha20Poly1305, nil
	case a.Encr == suite.EncrAESCBC && a.EncrKeyBits == 128 && a.Integ == suite.IntegHMACSHA256128:
		return ipsec.AES128SHA256, nil
	case a.Encr == suite.EncrAESCBC && a.EncrKeyBits == 256 && a.Integ == suite.IntegHMACSHA256128:
		return ipsec.AES256SHA256, nil
	}
	return ipsec.SuiteInvalid, fmt.Errorf("ESP suite %s is not one the data plane implements", a)
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
		s := &api.SA{SPI: spi, Dir: dir, Local: ike.Local.Addr(), Remote: ike.Remote.Addr(), Logical: Anchor(ike), Mode: api.Tunnel,
			Suite: suiteName, EncKey: enc, IntegKey: integ, ESN: ch.Alg.ESN, ReqID: ch.ReqID,
			LocalTS: slices.Clone(ch.LocalTS), RemoteTS: slices.Clone(ch.RemoteTS), Name: name}
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
			if ch.RekeyBytes > 0 {
				s.Lifetime.SoftBytes = ch.RekeyBytes
			}
			if ch.RekeyPackets > 0 {
				s.Lifetime.SoftPackets = ch.RekeyPackets
			}
		}
		return s
	}
	return mk(ch.SPIIn, api.In, inE, inI), mk(ch.SPIOut, api.Out, outE, outI), nil
}

// Anchor is the logical SPU the Child SAs and policies of ike are anchored
// on, as the SA API takes it: ike's own, or nil (its endpoints' hash) for
// an IKE SA without one.
func Anchor(ike *sa.IKESA) *int {
	if !ike.Anchored {
		return nil
	}
	lg := int(ike.Logical)
	return &lg
}

// Install puts a negotiated Child SA into the data plane: the inbound SA
// first (so that the peer's first packets find it), then the outbound SA,
// then its policy, unless a trap policy with the same selectors already
// carries its reqid. On error nothing of it stays installed. A data plane
// that takes a Child SA in one call (ChildDataPlane) gets one, all or
// nothing, for an anchored IKE SA's: one round trip to spud, not three.
func Install(c *Ctx, conn *config.Conn, cc *config.Child, ch *sa.ChildSA) error {
	p, err := planInstall(c, conn, cc, ch)
	if err != nil {
		return err
	}
	return p.install(c, cc, ch)
}

// ErrIKEGone is what InstallAsync's done gets when the IKE SA ended while
// its Child SA went in: what the data plane took is removed again.
var ErrIKEGone = errors.New("the IKE SA ended while its child sa was installed")

// InstallAsync is Install without waiting for the data plane, where the
// data plane takes a Child SA so (AsyncChildDataPlane), the exchange can
// wait (c.Resume is set) and the Child SA goes in with one call (an
// anchored IKE SA's) and takes no other IKE SA's policy over: it sends
// the request and reports pending; done gets Install's outcome later,
// through c.Resume, and returns the status of the step that waited.
// Otherwise it installs as Install does and returns the outcome at once
// (pending false), done unused.
//
// While the request is in flight the Child SA is in no IKE SA's list
// (the caller adds it in done), so nothing else asks the data plane about
// it before its add is answered. If the IKE SA ended meanwhile, the Child
// SA is removed again as the IKE SA's end would have removed it, and done
// gets ErrIKEGone.
func InstallAsync(c *Ctx, conn *config.Conn, cc *config.Child, ch *sa.ChildSA, done func(error) Status) (pending bool, err error) {
	p, err := planInstall(c, conn, cc, ch)
	if err != nil {
		return false, err
	}
	adp, ok := c.DataPlane().(AsyncChildDataPlane)
	if !ok || c.Resume == nil || p.in.Logical == nil || p.reauth || (p.needPolicy && sharesPolicy(c.Env, c.IKE)) {
		// A Child SA that takes another IKE SA's policy over (a
		// reauthentication's) goes in at once: the other IKE SA, which
		// the worker serves meanwhile, must not move under it. A
		// sibling's or a rekeyed Child SA's of this IKE SA stays as it is
		// while the exchange waits (the manager starts nothing else on the
		// IKE SA, nor runs its Child SAs' timers), and hands its policy
		// over when the install is answered. The first Child SA of IKE
		// SAs that share one policy (a load run's) goes in at once too:
		// the others, negotiated meanwhile, find its policy only once it
		// is in the IKE SA's list, else each would make one of its own.
		return false, p.install(c, cc, ch)
	}
	c.Stats().Inc(stats.InstallsAsync)
	adp.AddChildAsync(p.request(ch.OutPending), func(id uint32, err error) {
		c.Resume(func() Status {
			switch {
			case errors.Is(err, ErrNoChildOps):
				// A spud older than child.add: the separate calls, waited
				// for (such a spud is older than this path, too).
				err = p.separate(c, cc, ch)
			case err != nil:
				err = fmt.Errorf("install child sa 0x%08x/0x%08x: %w", p.in.SPI, p.out.SPI, err)
			default:
				p.adopted(c, cc, ch, id)
				followMove(c, p, ch)
			}
			if err == nil && c.IKE.State == sa.Destroyed {
				if uerr := Uninstall(c.DataPlane(), c.IKE, ch); uerr != nil {
					c.Stats().Fail(stats.DataPlane)
					c.Log.Warn("child sa of an IKE SA that ended while it was installed: removal incomplete", "spi_in", hex8(ch.SPIIn),
						"err", uerr.Error())
				}
				c.Stats().Inc(stats.ChildSAsDeleted)
				err = ErrIKEGone
			}
			return done(err)
		})
	})
	return true, nil
}

// PolicySharer is an Env whose IKE SAs of one tunnel may each have a
// Child SA while they share one policy (a load run's, found through
// Predecessor).
type PolicySharer interface {
	// SharesPolicy reports whether ike's Child SAs share a policy with
	// those of other IKE SAs.
	SharesPolicy(ike *sa.IKESA) bool
}

func sharesPolicy(e Env, ike *sa.IKESA) bool {
	ps, ok := e.(PolicySharer)
	return ok && ps.SharesPolicy(ike)
}

// followMove points a Child SA whose add was in flight when the peer's
// NAT mapping changed at where the peer is now: the manager moved the
// Child SAs in the IKE SA's list then, and this one was not in it yet.
func followMove(c *Ctx, p *installPlan, ch *sa.ChildSA) {
	ike := c.IKE
	ldp, ok := c.DataPlane().(LaterDataPlane)
	if !ok || !ch.Encap || p.out.Encap == nil || ike.State == sa.Destroyed {
		return
	}
	if p.out.Remote == ike.Remote.Addr() && p.out.Encap.RemotePort == ike.Remote.Port() && p.out.Encap.LocalPort == ike.Local.Port() {
		return
	}
	encap := &api.Encap{LocalPort: ike.Local.Port(), RemotePort: ike.Remote.Port()}
	u := &api.SAUpdate{SAID: api.SAID{SPI: ch.SPIOut, Dir: api.Out, Remote: p.out.Remote}, Encap: encap}
	if p.out.Remote != ike.Remote.Addr() {
		u.Remote = ike.Remote.Addr()
	}
	ldp.UpdateSALater(u)
	ldp.UpdateSALater(&api.SAUpdate{SAID: api.SAID{SPI: ch.SPIIn, Dir: api.In}, Encap: encap})
	c.Log.Debug("child sa installed while the peer moved: moved after it", "spi_out", hex8(ch.SPIOut), "to", ike.Remote.String())
}

// installPlan is what Install decided for a Child SA before asking the
// data plane: its two SAs, its policy if it needs one of its own, and the
// sibling whose policies it takes over once in.
type installPlan struct {
	in, out    *api.SA
	pol        *api.Policy
	needPolicy bool
	sib        *sa.ChildSA
	// reauth is set when sib is a reauthenticated predecessor, of
	// another IKE SA, whose policies moved to the Child SA.
	reauth bool
}

// planInstall settles a Child SA's reqid and policy (a sibling's, a
// reauthenticated predecessor's, a trap's, or one of its own) and makes
// its SAs.
func planInstall(c *Ctx, conn *config.Conn, cc *config.Child, ch *sa.ChildSA) (*installPlan, error) {
	ike := c.IKE
	if ch.UniqueID == 0 {
		ch.UniqueID = c.NewID()
	}
	sib, reauth := sibling(ike, ch), false
	if ch.Replaces != 0 {
		// A rekey: the new Child SA carries on the old one's reqid (its
		// policy), whatever state that one is in now.
		if old := ike.ChildByInSPI(ch.Replaces); old != nil && old.State != sa.ChildDeleted {
			sib = old
		}
	}
	if sib == nil && ch.Replaces == 0 {
		if pike, p := c.Predecessor(ike, ch); p != nil {
			// A reauthentication's Child SA replaces one of the old IKE SA:
			// same reqid, the policy moves over (from whichever Child SA of
			// the child holds it), and the responder sends through the new
			// one only once the old IKE SA is deleted (make before break).
			ch.ReqID, ch.Trap, ch.Replaces = p.ReqID, p.Trap, p.SPIIn
			for _, o := range pike.Children {
				if o.Name == p.Name && o.ReqID == p.ReqID {
					ch.PolicyIDs = append(ch.PolicyIDs, o.PolicyIDs...)
					o.PolicyIDs = nil
				}
			}
			sib, reauth = p, true
			if !ch.Initiator {
				ch.OutPending = true
			}
		}
	}
	if sib != nil {
		// A Child SA of the same child with the same selectors (its
		// replacement, or one the peer created next to it) shares its
		// reqid and takes its policy over: the data plane sends through
		// the newest outbound SA of a reqid, and the policy must outlive
		// the older Child SA's deletion.
		ch.ReqID, ch.Trap = sib.ReqID, sib.Trap
	} else if tr, ok := c.Trap(conn.Name, cc.Name); ok && ts.Equal(tr.LocalTS, ch.LocalTS) && ts.Equal(tr.RemoteTS, ch.RemoteTS) &&
		(!ike.Anchored || int(ike.Logical) == tr.Logical) {
		// The trap's policy sends through the newest outbound SA of its
		// reqid on the trap's SPU: only a Child SA anchored there may take
		// it over (an IKE SA anchored on its own SPU installs a policy
		// of its own).
		ch.ReqID, ch.Trap = tr.ReqID, true
	} else if ch.ReqID == 0 {
		ch.ReqID = c.NewReqID()
	}
	// The soft byte and packet limits get their jitter once, so that a
	// re-installation (resync) keeps them.
	if cc.RekeyBytes > 0 && ch.RekeyBytes == 0 {
		ch.RekeyBytes = uint64(cc.RekeyBytes) - jitterN(c.Rand(), uint64(cc.RandBytes), uint64(cc.RekeyBytes))
	}
	if cc.RekeyPackets > 0 && ch.RekeyPackets == 0 {
		ch.RekeyPackets = uint64(cc.RekeyPackets) - jitterN(c.Rand(), uint64(cc.RandPackets), uint64(cc.RekeyPackets))
	}
	name := SAName(conn.Name, cc.Name, ch.UniqueID)
	in, out, err := ChildSAs(ike, ch, cc, name)
	if err != nil {
		return nil, err
	}
	// A Child SA that shares a sibling's reqid shares its policy, wherever
	// it is now (Uninstall hands it on); only the first gets one.
	p := &installPlan{in: in, out: out, sib: sib, reauth: reauth, needPolicy: !ch.Trap && len(ch.PolicyIDs) == 0 && sib == nil}
	p.pol = &api.Policy{ReqID: ch.ReqID, Action: api.Protect, Local: ike.Local.Addr(), Remote: ike.Remote.Addr(), Logical: Anchor(ike),
		LocalTS: in.LocalTS, RemoteTS: in.RemoteTS, Name: name}
	return p, nil
}

// install makes p's calls to the data plane, waiting for each: one
// child.add where it can, else the separate calls.
func (p *installPlan) install(c *Ctx, cc *config.Child, ch *sa.ChildSA) error {
	done, err := addChild(c.DataPlane(), p, ch.OutPending)
	if err != nil {
		return err
	}
	if done != nil {
		p.adopted(c, cc, ch, *done)
		return nil
	}
	return p.separate(c, cc, ch)
}

// request is p as one child.add.
func (p *installPlan) request(outPending bool) *api.ChildAdd {
	req := &api.ChildAdd{Logical: *p.in.Logical, In: *p.in}
	if !outPending {
		req.Out = p.out
	}
	if p.needPolicy {
		req.Policy = p.pol
	}
	return req
}

// adopted records what the data plane took in one call: policyID is the
// new policy's (0: none), and the sibling's policies move to ch.
func (p *installPlan) adopted(c *Ctx, cc *config.Child, ch *sa.ChildSA, policyID uint32) {
	if p.sib != nil && len(p.sib.PolicyIDs) > 0 {
		ch.PolicyIDs, p.sib.PolicyIDs = p.sib.PolicyIDs, nil
	}
	if policyID != 0 {
		ch.PolicyIDs = append(ch.PolicyIDs, policyID)
	}
	installed(c, cc, ch)
}

// separate installs p with a call for each part, inbound SA first,
// undoing what went in when a part is refused.
func (p *installPlan) separate(c *Ctx, cc *config.Child, ch *sa.ChildSA) error {
	dp := c.DataPlane()
	in, out := p.in, p.out
	if err := dp.AddSA(in); err != nil {
		return fmt.Errorf("install inbound sa 0x%08x: %w", in.SPI, err)
	}
	if !ch.OutPending {
		if err := dp.AddSA(out); err != nil {
			dp.DelSA(api.SAID{SPI: in.SPI, Dir: api.In})
			return fmt.Errorf("install outbound sa 0x%08x: %w", out.SPI, err)
		}
	}
	if p.sib != nil && len(p.sib.PolicyIDs) > 0 {
		ch.PolicyIDs, p.sib.PolicyIDs = p.sib.PolicyIDs, nil
	}
	if p.needPolicy {
		id, err := dp.AddPolicy(p.pol)
		if err != nil {
			dp.DelSA(api.SAID{SPI: out.SPI, Dir: api.Out, Remote: out.Remote})
			dp.DelSA(api.SAID{SPI: in.SPI, Dir: api.In})
			return fmt.Errorf("install policy %s === %s: %w", ipsec.Selectors(ch.LocalTS), ipsec.Selectors(ch.RemoteTS), err)
		}
		ch.PolicyIDs = append(ch.PolicyIDs, id)
	}
	installed(c, cc, ch)
	return nil
}

// addChild installs a Child SA of an anchored IKE SA in one call when the
// data plane takes it (ChildDataPlane): the inbound SA, the outbound SA
// unless held back, the policy if needed. It returns the policy's id (0:
// none), or nil when the caller is to make the separate calls: the data
// plane has no such call, or the IKE SA no anchor to give it.
func addChild(dp DataPlane, p *installPlan, outPending bool) (*uint32, error) {
	cdp, ok := dp.(ChildDataPlane)
	if !ok || p.in.Logical == nil {
		return nil, nil
	}
	id, err := cdp.AddChild(p.request(outPending))
	switch {
	case errors.Is(err, ErrNoChildOps):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("install child sa 0x%08x/0x%08x: %w", p.in.SPI, p.out.SPI, err)
	}
	return &id, nil
}

// installed marks ch installed now and sets its rekey and expiry times.
func installed(c *Ctx, cc *config.Child, ch *sa.ChildSA) {
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
}

// OutPendingProbe is how often the responder of a rekey looks for the
// first packet through its new inbound SA: the initiator installs its new
// inbound SA before it sends through the new Child SA, so traffic there
// means the new outbound SA can go in too, even if the initiator's DELETE
// of the old Child SA is late or never comes.
const OutPendingProbe = time.Second

// InstallOutbound installs the outbound SA of a Child SA whose outbound
// was held back (OutPending); from then on the data plane sends through it.
func InstallOutbound(c *Ctx, ch *sa.ChildSA) error {
	if !ch.OutPending || ch.State == sa.ChildDeleted || ch.Redundant {
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
	if ldp, ok := c.DataPlane().(LaterDataPlane); ok {
		// Its Child SA's removal, if any comes, is made after it.
		ldp.AddSALater(out)
		ch.OutPending = false
		return nil
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
		if o != ch && o.Name == ch.Name && (o.State == sa.ChildInstalled || o.State == sa.ChildRekeying || o.State == sa.ChildRekeyed) &&
			ts.Equal(o.LocalTS, ch.LocalTS) && ts.Equal(o.RemoteTS, ch.RemoteTS) {
			return o
		}
	}
	return nil
}

// Jitter is a random duration in [0, max): what rand_time takes off a
// rekey time.
func Jitter(r io.Reader, max time.Duration) time.Duration {
	d := config.Duration(max)
	return jitter(r, &d)
}

// jitterN is a random count in [0, max), never reaching limit (so that a
// soft limit stays above zero).
func jitterN(r io.Reader, max, limit uint64) uint64 {
	if max == 0 || limit <= 1 {
		return 0
	}
	max = min(max, limit-1)
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0
	}
	return binary.BigEndian.Uint64(b[:]) % max
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
// (unless a sibling Child SA of the same child takes them over: the
// replacement of a rekeyed Child SA, or the one that won a collision),
// then the outbound and the inbound SA. A trap's policy stays. Failures
// are returned joined; each removal is tried. A ChildDataPlane gets it
// all in one call, a LaterDataPlane without the worker waiting for it
// (its failure is the data plane's to report).
func Uninstall(dp DataPlane, ike *sa.IKESA, ch *sa.ChildSA) error {
	return uninstall(dp, ike, ch, time.Time{})
}

// UninstallDrained is Uninstall that leaves the inbound SA in the data
// plane until until, listed in drainIn's Draining (the IKE SA that
// replaces ike, when ike goes with a reauthentication).
func UninstallDrained(dp DataPlane, ike *sa.IKESA, ch *sa.ChildSA, drainIn *sa.IKESA, until time.Time) error {
	err := uninstall(dp, ike, ch, until)
	if drainIn != ike && !until.IsZero() && len(ike.Draining) > 0 {
		drainIn.Draining = append(drainIn.Draining, ike.Draining[len(ike.Draining)-1])
		ike.Draining = ike.Draining[:len(ike.Draining)-1]
	}
	return err
}

// uninstall is Uninstall that, when drainUntil is set, leaves the inbound
// SA in the data plane until then (listed in ike.Draining), for packets
// the peer sent through it before it switched to the replacement.
func uninstall(dp DataPlane, ike *sa.IKESA, ch *sa.ChildSA, drainUntil time.Time) error {
	if ch.State == sa.ChildDeleted {
		return nil
	}
	var errs []error
	if len(ch.PolicyIDs) > 0 {
		if heir := policyHeir(ike, ch); heir != nil {
			heir.PolicyIDs = append(heir.PolicyIDs, ch.PolicyIDs...)
			ch.PolicyIDs = nil
		}
	}
	if cdp, ok := dp.(ChildDataPlane); ok {
		req := &api.ChildDel{Policies: ch.PolicyIDs}
		if ch.SPIOut != 0 && !ch.OutPending {
			req.Out = &api.SAID{SPI: ch.SPIOut, Dir: api.Out, Remote: ike.Remote.Addr()}
		}
		if ch.SPIIn != 0 && drainUntil.IsZero() {
			req.In = &api.SAID{SPI: ch.SPIIn, Dir: api.In}
		}
		err := error(nil)
		if ldp, ok := dp.(LaterDataPlane); ok {
			if req.Out != nil || req.In != nil || len(req.Policies) > 0 {
				// Nothing waits for the removal's outcome: the worker
				// does not wait for it either.
				ldp.DelChildLater(req)
			}
		} else if req.Out != nil || req.In != nil || len(req.Policies) > 0 {
			err = cdp.DelChild(req)
		}
		if !errors.Is(err, ErrNoChildOps) {
			ch.PolicyIDs = nil
			if ch.SPIIn != 0 && !drainUntil.IsZero() {
				ike.Draining = append(ike.Draining, sa.DrainingSA{SPI: ch.SPIIn, Name: ch.Name, Until: drainUntil})
			}
			ch.State = sa.ChildDeleted
			if err != nil {
				return fmt.Errorf("child sa 0x%08x/0x%08x: %w", ch.SPIIn, ch.SPIOut, err)
			}
			return nil
		}
	}
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
		if !drainUntil.IsZero() {
			ike.Draining = append(ike.Draining, sa.DrainingSA{SPI: ch.SPIIn, Name: ch.Name, Until: drainUntil})
		} else if err := dp.DelSA(api.SAID{SPI: ch.SPIIn, Dir: api.In}); err != nil {
			errs = append(errs, fmt.Errorf("inbound sa 0x%08x: %w", ch.SPIIn, err))
		}
	}
	ch.State = sa.ChildDeleted
	return errors.Join(errs...)
}

// policyHeir picks the Child SA that takes over the policies of ch when ch
// goes: another Child SA of the same child and reqid that stays, the one
// not redundant and installed first.
func policyHeir(ike *sa.IKESA, ch *sa.ChildSA) *sa.ChildSA {
	var best *sa.ChildSA
	rank := func(o *sa.ChildSA) int {
		switch {
		case o.Redundant:
			return 1
		case o.State == sa.ChildRekeyed:
			return 2
		}
		return 3
	}
	for _, o := range ike.Children {
		if o == ch || o.Name != ch.Name || o.ReqID != ch.ReqID || o.Trap != ch.Trap ||
			o.State == sa.ChildDeleted || o.State == sa.ChildDeleting {
			continue
		}
		if best == nil || rank(o) > rank(best) {
			best = o
		}
	}
	return best
}

// DrainDue removes the draining inbound SAs of ike whose time is up (all
// of them with force) and reports whether any was removed.
func DrainDue(dp DataPlane, ike *sa.IKESA, now time.Time, force bool) (removed int, err error) {
	kept := ike.Draining[:0]
	var errs []error
	for _, d := range ike.Draining {
		if !force && now.Before(d.Until) {
			kept = append(kept, d)
			continue
		}
		removed++
		if ldp, ok := dp.(LaterDataPlane); ok {
			ldp.DelChildLater(&api.ChildDel{In: &api.SAID{SPI: d.SPI, Dir: api.In}})
		} else if e := dp.DelSA(api.SAID{SPI: d.SPI, Dir: api.In}); e != nil {
			errs = append(errs, fmt.Errorf("inbound sa 0x%08x: %w", d.SPI, e))
		}
	}
	ike.Draining = kept
	if len(ike.Draining) == 0 {
		ike.Draining = nil
	}
	return removed, errors.Join(errs...)
}
