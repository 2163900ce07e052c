package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"hash"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/spugate/spugate/dataplane/iphdr"
	"github.com/spugate/spugate/dataplane/replay"
)

// Sizes of the ESP framing.
const (
	espHdrLen = 8  // SPI and sequence number
	icvLen    = 16 // every supported suite has a 16-byte ICV
	maxIVLen  = 16
	maxBlock  = 16
	// gcmFastLen is the multiple that Go's AES-GCM assembly processes
	// fastest (eight blocks at a time); see Config.SpeedPad.
	gcmFastLen = 128
	// maxSpeedPad is the most padding beyond 16-byte alignment that can
	// reach a multiple of gcmFastLen.
	maxSpeedPad = gcmFastLen - maxBlock
)

// Worst-case growth of a packet by Encap, for sizing buffers.
const (
	// MaxHeadGrowth is the most bytes Encap adds in front of a packet:
	// outer IPv6 header, UDP header, ESP header and a 16-byte CBC IV.
	MaxHeadGrowth = iphdr.IPv6Len + iphdr.UDPLen + espHdrLen + maxIVLen
	// MaxTailGrowth is the most bytes Encap adds after a packet: up to 15
	// bytes of padding, pad length, next header and the ICV. Speed padding
	// (Config.SpeedPad) adds more only where len(buf) leaves room for it.
	MaxTailGrowth = maxBlock - 1 + 2 + icvLen
	// Headroom is the minimum headroom (bytes before off) a caller gives
	// Encap: MaxHeadGrowth plus an Ethernet header that the caller writes
	// in front of the result afterwards.
	Headroom = MaxHeadGrowth + iphdr.EthernetLen
	// Tailroom is the minimum tailroom (bytes after off+n, up to len(buf)).
	Tailroom = MaxTailGrowth
	// SpeedPadTailroom is the tailroom that lets speed padding
	// (Config.SpeedPad) always apply; with less, Encap skips it for the
	// packets whose speed padding does not fit.
	SpeedPadTailroom = Tailroom + maxSpeedPad
)

// padBytes is the padding of RFC 4303 section 2.4 (1, 2, 3, ...), the
// longest a pad length byte can announce.
var padBytes = func() (b [255]byte) {
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}()

// Events are conditions the control plane must act on. They are raised
// once each (a latch) and collected by the owner with TakeEvents. A byte:
// an SA holds two Events, and every byte counts toward its size class.
type Events uint8

// Events.
const (
	// EventSoftLifetime: a soft byte or packet lifetime was reached; rekey.
	EventSoftLifetime Events = 1 << iota
	// EventHardLifetime: a hard lifetime was reached; the SA now drops
	// every packet (counted under HardLifetime). Delete it.
	EventHardLifetime
	// EventSeqNearExhaustion: the outbound sequence number passed the soft
	// limit; rekey before it runs out.
	EventSeqNearExhaustion
	// EventSeqExhausted: the last sequence number was used; the SA sends
	// nothing more (counted under SeqExhausted).
	EventSeqExhausted
)

// String lists the events raised, joined by "|", or says "none".
func (e Events) String() string {
	if e == 0 {
		return "none"
	}
	s := ""
	names := [...]string{"soft-lifetime", "hard-lifetime", "seq-near-exhaustion", "seq-exhausted"}
	for i, n := range names {
		if e&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	return s
}

// Stats is a snapshot of an SA's counters.
type Stats struct {
	// Packets and Bytes count packets processed successfully and their
	// inner (plaintext IP) bytes.
	Packets, Bytes uint64
	// Seq is the last sequence number sent (outbound) or the highest
	// accepted (inbound).
	Seq uint64
	// Drops counts dropped packets by reason.
	Drops [NumReasons]uint64
}

// counters are the owner's totals as Stats sees them: written by the owner
// only (a single writer needs no read-modify-write), read by anyone. The
// drops are apart, made at an SA's first drop: most SAs never drop a
// packet, and 22 reasons are 176 bytes of each of two million SAs.
type counters struct {
	packets, bytes counter
	drops          atomic.Pointer[[NumReasons]counter]
}

// ivSetter is the method crypto/cipher's CBC modes have for reusing one
// BlockMode with a new IV, which avoids allocating a mode per packet.
type ivSetter interface {
	SetIV([]byte)
}

// SA is one direction of a Child SA. Its per-packet methods (Encap, Decap,
// the batch forms, TakeEvents, State, Restore, SetPeer, SetPathMTU,
// SetCiphers, Release) belong to the owner goroutine and must not be
// called concurrently; Stats may be called from any goroutine.
//
// An SA keeps its keys and makes its cipher state (an expanded AES key
// and GHASH table is ~700 bytes; with the outer header templates and the
// nonce, see warm) when it first carries a packet; the owner's Ciphers
// drops the state again once the SA has been idle for a while. A million
// tunnels are two million SAs, most of them idle at any moment: cold,
// an SA is about a third of what it was warm.
type SA struct {
	// w is the warm state, nil while the SA is cold.
	w *warm
	// owner, when set, is the owner's (an SPU's): its drop totals, which
	// count also adds to, and its list of warm SAs, which cools them
	// when idle.
	owner *Owner
	// ext is what only some SAs have: byte and packet lifetimes, a CBC
	// suite's integrity key. Nil for most (the control plane rekeys on
	// time, and AEAD needs no second key).
	ext *saExt
	// ts are the selectors (nil: none), shared with the other SA of the
	// Child SA and its policy (CompileSelectors): a pointer, where a
	// slice and its count of local ones took 26 bytes and the SA the
	// 256-byte size class.
	ts *Selectors

	// seq is, outbound, the last sequence number sent; inbound, the
	// highest accepted as last published (publish): what Stats reads
	// either way, where a copy of it among the counters took 8 bytes.
	seq     counter
	seqSoft uint64
	win     replay.Window

	// ctr is both the owner's usage totals and what Stats reads.
	ctr counters

	// The outer addresses, as 16 bytes (IPv4-mapped for an IPv4 outer
	// header, by v4outer): a netip.Addr is 24.
	local, remote [16]byte

	spi     uint32
	ipID    uint16
	lport   uint16
	rport   uint16
	pathMTU uint16
	// events and raised sit among the bytes, where they fill what the
	// 16-byte fields' alignment would leave: the SA fits 224 bytes.
	events, raised Events
	dir            Direction
	suite          ipsec.Suite
	mode           Mode
	// flags are the SA's options that are set once (saFlag): one byte
	// for eight bools, which with seq keep the SA in 208 bytes.
	flags    saFlag
	v4outer  bool
	udp      bool
	df       DFPolicy
	ecn      ECNMode
	expired  bool
	ivLen    uint8 // 8 or 16
	blkMask  uint8
	speedPad uint8 // extra padding allowed for AES-GCM (0 otherwise)
	ipLen    uint8 // outer IP header length in tunnel mode
	udpLen   uint8 // 8 with UDP encapsulation
	// key is the encryption key, salt included (AEAD suites), which the
	// cipher state is made from whenever the SA warms up.
	key [36]byte
}

// saFlag is an option of an SA, set when it is made (SA.flags).
type saFlag uint8

const (
	flagESN saFlag = 1 << iota
	// flagNoReplay: anti-replay is off (ReplayOff); the window only
	// tracks the highest number, for ESN.
	flagNoReplay
	flagAEAD
	flagZeroCk6
	flagFragBig
	flagNoDSCP
	flagDecDSCP
	flagTSPorts // a selector names a protocol or ports
)

// has reports whether the SA has option f.
func (sa *SA) has(f saFlag) bool { return sa.flags&f != 0 }

// set gives the SA option f when on.
func (sa *SA) set(f saFlag, on bool) {
	if on {
		sa.flags |= f
	}
}

// saExt is the part of an SA that few SAs need (SA.ext).
type saExt struct {
	life Lifetime
	// nextPkts and nextByts are the next usage levels worth looking at.
	nextPkts, nextByts uint64
	integ              [32]byte
}

// cbcState is the crypto state of the CBC suites, apart from the warm
// state so that the AEAD SAs, nearly all of them, do not carry its ~270
// bytes.
type cbcState struct {
	mode     cipher.BlockMode
	iv       ivSetter
	ivCipher cipher.Block
	mac      hash.Hash
	ivIn     [16]byte // IV generator input: SPI, 0, sequence number
	ivs      cbcIVs
	macSum   [sha256.Size]byte
}

// NewSA validates cfg and returns an SA ready for packets. Keys are copied
// into the SA; cfg may be discarded afterwards. The cipher state is made
// when the SA first carries a packet (see SA).
func NewSA(cfg Config) (*SA, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sa := &SA{
		spi:     cfg.SPI,
		dir:     cfg.Direction,
		suite:   cfg.Suite,
		mode:    cfg.Mode,
		ivLen:   uint8(cfg.Suite.IVLen()),
		blkMask: uint8(padAlign(cfg.PadAlign) - 1),
		df:      cfg.DF,
		ecn:     cfg.ECN,
		udp:     cfg.UDPEncap,
	}
	sa.set(flagESN, cfg.ESN)
	sa.set(flagAEAD, cfg.Suite.AEAD())
	sa.set(flagFragBig, cfg.FragmentTooBig)
	sa.set(flagNoDSCP, cfg.NoEncapDSCP)
	sa.set(flagDecDSCP, cfg.DecapDSCP)
	sa.set(flagZeroCk6, cfg.UDPZeroChecksum6)
	if cfg.Lifetime != (Lifetime{}) || len(cfg.IntegKey) != 0 {
		sa.ext = &saExt{life: cfg.Lifetime}
		copy(sa.ext.integ[:], cfg.IntegKey)
	}
	switch cfg.Suite {
	case ipsec.AES128GCM16, ipsec.AES192GCM16, ipsec.AES256GCM16:
		sa.speedPad = uint8(cfg.SpeedPad)
	}
	copy(sa.key[:], cfg.EncKey)
	if sa.udp {
		sa.udpLen = iphdr.UDPLen
	}
	sa.v4outer = cfg.Local.Unmap().Is4()
	if sa.v4outer {
		sa.ipLen = iphdr.IPv4MinLen
	} else {
		sa.ipLen = iphdr.IPv6Len
	}
	sa.local, sa.remote, sa.lport, sa.rport = cfg.Local.As16(), cfg.Remote.As16(), cfg.LocalPort, cfg.RemotePort
	// A per-SA starting IPv4 ID keeps the IDs of SAs between the same two
	// gateways apart for a while (RFC 6864 asks uniqueness only for
	// fragmentable datagrams).
	sa.ipID = uint16(sa.spi>>16) ^ uint16(sa.spi)
	sa.pathMTU = uint16(cfg.PathMTU)
	if sa.pathMTU == 0 {
		sa.pathMTU = DefaultPathMTU
	}
	if sa.has(flagESN) {
		sa.seqSoft = DefaultSeqSoftLimit64
	} else {
		sa.seqSoft = DefaultSeqSoftLimit32
	}
	if cfg.SeqSoftLimit != 0 {
		sa.seqSoft = cfg.SeqSoftLimit
	}
	if sa.dir == Inbound {
		size := cfg.ReplayWindow
		if size == ReplayOff {
			sa.set(flagNoReplay, true)
			size = 0
		}
		if err := sa.win.Init(size); err != nil {
			return nil, fmt.Errorf("esp: sa 0x%08x: %w", cfg.SPI, err)
		}
	}
	sa.ts = CompileSelectors(cfg.LocalTS, cfg.RemoteTS)
	for _, s := range sa.ts.all() {
		if s.Proto != 0 || !s.AnyPort() {
			sa.set(flagTSPorts, true)
		}
	}
	sa.resetThresholds()
	return sa, nil
}

// Selectors is a compiled list of traffic selectors, the local ranges,
// then the remote ones: what an SA checks its inner packets against, and
// what spud's SPUs keep of a policy's selectors. Never changed once made,
// so that SAs and policies on any goroutine may share one.
type Selectors struct {
	r      []ipsec.Range
	nLocal uint16
}

// lastTS is the selector list CompileSelectors made last. The two SAs of
// a Child SA and its policy are made one after the other with the same
// selectors: the later ones take the first's list, and a tunnel keeps
// one (96 bytes for a selector each way) rather than three.
var lastTS atomic.Pointer[Selectors]

// CompileSelectors compiles local and remote selectors (nil for none),
// sharing the list made just before when it is the same.
func CompileSelectors(local, remote []ipsec.Selector) *Selectors {
	n := len(local) + len(remote)
	if n == 0 {
		return nil
	}
	rs := make([]ipsec.Range, 0, n)
	for _, s := range local {
		rs = append(rs, s.Range())
	}
	for _, s := range remote {
		rs = append(rs, s.Range())
	}
	nl := uint16(len(local))
	if last := lastTS.Load(); last != nil && last.nLocal == nl && slices.Equal(last.r, rs) {
		return last
	}
	ts := &Selectors{r: rs, nLocal: nl}
	lastTS.Store(ts)
	return ts
}

// all returns every range, local and remote (nil of a nil list).
func (ts *Selectors) all() []ipsec.Range {
	if ts == nil {
		return nil
	}
	return ts.r
}

// Local returns the local ranges (nil of a nil list).
func (ts *Selectors) Local() []ipsec.Range {
	if ts == nil {
		return nil
	}
	return ts.r[:ts.nLocal:ts.nLocal]
}

// Remote returns the remote ranges (nil of a nil list).
func (ts *Selectors) Remote() []ipsec.Range {
	if ts == nil {
		return nil
	}
	return ts.r[ts.nLocal:]
}

// Selectors returns the selectors the list was compiled from, rebuilt
// (addresses unmapped, no zone; nil for none). It allocates: for dumps,
// not for packets.
func (ts *Selectors) Selectors() (local, remote []ipsec.Selector) { return rangeSelectors(ts) }

// seqMax is the last sequence number the SA may send.
func (sa *SA) seqMax() uint64 {
	if sa.has(flagESN) {
		return 1<<64 - 1
	}
	return 1<<32 - 1
}

// localTS and remoteTS are the compiled selectors of either side.
func (sa *SA) localTS() []ipsec.Range  { return sa.ts.Local() }
func (sa *SA) remoteTS() []ipsec.Range { return sa.ts.Remote() }

// initCrypto makes w's cipher state from the SA's keys, which validate
// checked: the constructors' errors (key lengths) cannot happen.
func (sa *SA) initCrypto(w *warm) error {
	keyLen := sa.suite.EncKeyLen()
	key := sa.key[:keyLen]
	switch sa.suite {
	case ipsec.AES128GCM16, ipsec.AES192GCM16, ipsec.AES256GCM16:
		b, err := aes.NewCipher(key[:keyLen-ipsec.SaltLen])
		if err != nil {
			return err
		}
		if w.aead, err = cipher.NewGCM(b); err != nil {
			return err
		}
		copy(w.nonce[:ipsec.SaltLen], key[keyLen-ipsec.SaltLen:])
	case ipsec.ChaCha20Poly1305:
		var err error
		if w.aead, err = chacha20poly1305.New(key[:chacha20poly1305.KeySize]); err != nil {
			return err
		}
		copy(w.nonce[:ipsec.SaltLen], key[chacha20poly1305.KeySize:])
	case ipsec.AES128SHA256, ipsec.AES256SHA256:
		b, err := aes.NewCipher(key)
		if err != nil {
			return err
		}
		c := &cbcState{}
		w.cbc = c
		binary.BigEndian.PutUint32(c.ivIn[0:4], sa.spi)
		var zero [aes.BlockSize]byte
		if sa.dir == Outbound {
			c.mode = cipher.NewCBCEncrypter(b, zero[:])
		} else {
			c.mode = cipher.NewCBCDecrypter(b, zero[:])
		}
		var ok bool
		if c.iv, ok = c.mode.(ivSetter); !ok {
			return fmt.Errorf("crypto/cipher CBC mode lacks SetIV")
		}
		c.mac = hmac.New(sha256.New, sa.ext.integ[:])
		// CBC needs IVs that an attacker cannot predict (RFC 3602 section
		// 3; NIST SP 800-38A appendix C). Encrypting a never-repeating
		// counter (SPI and sequence number) under a secret key gives one per
		// packet without a random number generator on the hot path (see
		// cbcIVs). The IV key is derived from the integrity key with HMAC
		// as a PRF, so it is independent of the encryption key and the same
		// after a restart or migration (IVs only need to be unpredictable
		// and distinct).
		ivm := hmac.New(sha256.New, sa.ext.integ[:])
		ivm.Write([]byte("spugate esp-cbc iv key"))
		ivKey := ivm.Sum(nil)[:len(key)]
		if c.ivCipher, err = aes.NewCipher(ivKey); err != nil {
			return err
		}
		clear(ivKey)
	default:
		return fmt.Errorf("unknown suite %d", sa.suite)
	}
	return nil
}

func padAlign(a int) int {
	if a == 0 {
		return 16
	}
	return a
}

// buildHeaders builds w's outer header templates from the SA's endpoints.
func (sa *SA) buildHeaders(w *warm) {
	proto := byte(iphdr.ProtoESP)
	if sa.udp {
		proto = iphdr.ProtoUDP
	}
	if sa.v4outer {
		h := &w.hdr4
		*h = [iphdr.IPv4MinLen]byte{0: 0x45, 8: iphdr.DefaultTTL, 9: proto}
		src, dst := [4]byte(sa.local[12:]), [4]byte(sa.remote[12:])
		if sa.dir == Inbound {
			src, dst = dst, src
		}
		copy(h[12:16], src[:])
		copy(h[16:20], dst[:])
		w.hdrSum = iphdr.Sum(h[:], 0)
		return
	}
	h := &w.hdr6
	// A flow label per SA (RFC 6438) lets ECMP paths spread the SAs
	// between two gateways without looking into ESP.
	flow := (sa.spi * 2654435761) >> 12 & 0xfffff
	binary.BigEndian.PutUint32(h[0:4], 6<<28|flow)
	h[6] = proto
	h[7] = iphdr.DefaultTTL
	src, dst := sa.local, sa.remote
	if sa.dir == Inbound {
		src, dst = dst, src
	}
	copy(h[8:24], src[:])
	copy(h[24:40], dst[:])
	w.hdrSum = iphdr.Sum(h[8:40], 0) + iphdr.ProtoUDP
}

// SetPeer changes the peer's outer address and UDP port in place, for a NAT
// mapping that changed (RFC 7296 section 2.23) or a MOBIKE move. The address
// must be of the SA's outer family. Owner only.
func (sa *SA) SetPeer(remote netip.Addr, port uint16) error {
	remote = remote.Unmap()
	if !remote.IsValid() || remote.Is4() != sa.v4outer {
		return fmt.Errorf("esp: sa 0x%08x: peer address %s is not of the SA's family", sa.spi, remote)
	}
	if sa.udp && port == 0 {
		return fmt.Errorf("esp: sa 0x%08x: UDP-encapsulated SA needs a peer port", sa.spi)
	}
	sa.remote, sa.rport = remote.As16(), port
	if sa.w != nil {
		sa.buildHeaders(sa.w)
	}
	return nil
}

// SetPathMTU changes the path MTU used to decide on fragmentation and ICMP
// "too big" (for example from a PMTU update). Owner only.
func (sa *SA) SetPathMTU(mtu int) error {
	if mtu < iphdrMinMTU(sa.Local()) || mtu > 65535 {
		return fmt.Errorf("esp: sa 0x%08x: path MTU %d out of range", sa.spi, mtu)
	}
	sa.pathMTU = uint16(mtu)
	return nil
}

// SPI returns the SA's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Direction returns the SA's direction.
func (sa *SA) Direction() Direction { return sa.dir }

// Suite returns the SA's cipher suite.
func (sa *SA) Suite() ipsec.Suite { return sa.suite }

// Mode returns the SA's mode.
func (sa *SA) Mode() Mode { return sa.mode }

// ESN reports whether the SA uses extended sequence numbers.
func (sa *SA) ESN() bool { return sa.has(flagESN) }

// Lifetime returns the SA's byte and packet limits.
func (sa *SA) Lifetime() Lifetime {
	if sa.ext == nil {
		return Lifetime{}
	}
	return sa.ext.life
}

// Local returns the SA's local outer address (unmapped: an IPv4 address
// given as IPv4-mapped IPv6 comes back as IPv4).
func (sa *SA) Local() netip.Addr { return sa.addr(&sa.local) }

// Remote returns the peer's outer address, as SetPeer last set it
// (unmapped).
func (sa *SA) Remote() netip.Addr { return sa.addr(&sa.remote) }

func (sa *SA) addr(a *[16]byte) netip.Addr {
	if sa.v4outer {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(*a)
}

// UDPEncap reports whether the SA is UDP-encapsulated, and its ports (the
// peer's as SetPeer last set it).
func (sa *SA) UDPEncap() (udp bool, local, remote uint16) { return sa.udp, sa.lport, sa.rport }

// Selectors returns the SA's traffic selectors, as Config gave them (nil
// for none; addresses unmapped). They are rebuilt from the compiled form
// the SA keeps for its checks, so that the SA holds one copy: each call
// allocates, for dumps, not for packets.
func (sa *SA) Selectors() (local, remote []ipsec.Selector) { return sa.ts.Selectors() }

// rangeSelectors rebuilds the selectors of ts, both sides in one
// allocation: a listing of a million SAs or policies makes one slice
// each, not two.
func rangeSelectors(ts *Selectors) (local, remote []ipsec.Selector) {
	rs := ts.all()
	if len(rs) == 0 {
		return nil, nil
	}
	out := make([]ipsec.Selector, len(rs))
	for i, r := range rs {
		out[i] = ipsec.Selector{Proto: r.Proto, From: wordsAddr(r.V4, r.FromHi, r.FromLo),
			To: wordsAddr(r.V4, r.ToHi, r.ToLo), FromPort: r.FromPort, ToPort: r.ToPort}
	}
	nl := int(ts.nLocal)
	if nl > 0 {
		local = out[:nl:nl]
	}
	if nl < len(out) {
		remote = out[nl:]
	}
	return local, remote
}

// wordsAddr is the inverse of ipsec.AddrWords.
func wordsAddr(v4 bool, hi, lo uint64) netip.Addr {
	if v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// Overhead returns the bytes Encap adds to an inner packet of n bytes in
// tunnel mode (outer headers, padding, trailer and ICV), speed padding
// included when the caller gives SpeedPadTailroom.
func (sa *SA) Overhead(n int) int {
	fixed := int(sa.ipLen) + int(sa.udpLen) + espHdrLen + int(sa.ivLen) + icvLen
	pad := -(n + 2) & int(sa.blkMask)
	pad += sa.extraPad(n+2+pad, n+fixed+pad+2, 1<<30)
	return fixed + pad + 2
}

// extraPad is the speed padding (Config.SpeedPad) for an encrypted part of
// ctLen bytes in a packet of outLen bytes, given room bytes of spare
// tailroom: 0 when it is off, not needed, too long, or would not fit.
func (sa *SA) extraPad(ctLen, outLen, room int) int {
	extra := -ctLen & (gcmFastLen - 1)
	if extra == 0 || extra > int(sa.speedPad) || outLen+extra > int(sa.pathMTU) || extra > room {
		return 0
	}
	return extra
}

// InnerMTU returns the largest inner packet that fits the path MTU once
// encapsulated in tunnel mode.
func (sa *SA) InnerMTU() int {
	return sa.innerMTU(int(sa.ipLen), 0)
}

// innerMTU is the largest packet whose payload (all of it in tunnel mode,
// the part after hl header bytes in transport mode) fits the path MTU.
func (sa *SA) innerMTU(outerHdr, hl int) int {
	avail := int(sa.pathMTU) - outerHdr - int(sa.udpLen) - espHdrLen - int(sa.ivLen) - icvLen
	return hl + avail&^int(sa.blkMask) - 2
}

// count counts a drop, in the SA's totals and its owner's. The SA's first
// drop makes its drop counters (see counters).
func (sa *SA) count(r Reason) {
	d := sa.ctr.drops.Load()
	if d == nil {
		d = new([NumReasons]counter)
		sa.ctr.drops.Store(d)
	}
	c := &d[r]
	c.Store(c.Load() + 1)
	if o := sa.owner; o != nil && o.drops != nil {
		d := o.drops
		c := &d.c[r]
		c.Store(c.Load() + 1)
	}
}

// DropTotals are drop counts by reason that the SAs of one owner (an SPU)
// add to as they count their own: totals across a million SAs then cost
// nothing to read, and keep the drops of SAs that are gone. Written by the
// owner only, read by anyone.
type DropTotals struct {
	c [NumReasons]counter
}

// Load returns the drops counted for reason r.
func (d *DropTotals) Load(r Reason) uint64 { return d.c[r].Load() }

// publish makes the owner's sequence number visible to Stats (the usage
// counters are written as they change: see account).
func (sa *SA) publish() {
	if sa.dir == Inbound {
		sa.seq.Store(sa.win.Top())
	}
}

// Stats returns a snapshot of the counters. Safe from any goroutine; the
// figures of one call may straddle a packet (each is exact on its own).
func (sa *SA) Stats() Stats {
	var s Stats
	s.Packets = sa.ctr.packets.Load()
	s.Bytes = sa.ctr.bytes.Load()
	s.Seq = sa.seq.Load()
	if d := sa.ctr.drops.Load(); d != nil {
		for i := range s.Drops {
			s.Drops[i] = d[i].Load()
		}
	}
	return s
}

// TakeEvents returns the events raised since the last call and clears
// them. Owner only; it does not allocate.
func (sa *SA) TakeEvents() Events {
	e := sa.events
	sa.events = 0
	return e
}

func (sa *SA) raise(e Events) {
	if sa.raised&e == e {
		return
	}
	sa.events |= e &^ sa.raised
	sa.raised |= e
}

// resetThresholds recomputes the next usage levels worth looking at, so
// that the per-packet check is two comparisons (none without lifetimes).
func (sa *SA) resetThresholds() {
	x := sa.ext
	if x == nil {
		return
	}
	x.nextPkts, x.nextByts = ^uint64(0), ^uint64(0)
	pick := func(next *uint64, soft, hard uint64, softDone bool) {
		if soft != 0 && !softDone && soft < *next {
			*next = soft
		}
		if hard != 0 && hard < *next {
			*next = hard
		}
	}
	softDone := sa.raised&EventSoftLifetime != 0
	pick(&x.nextPkts, x.life.SoftPackets, x.life.HardPackets, softDone)
	pick(&x.nextByts, x.life.SoftBytes, x.life.HardBytes, softDone)
	sa.checkLifetimes()
}

// account adds one packet of n inner bytes to the usage. The counters
// are the owner's totals too: on amd64 and arm64 their Load and Store are
// plain moves (see counter), so that counting into them costs what an
// owner's copy published once a batch did, without the copy's 16 bytes.
func (sa *SA) account(n int) {
	pkts := sa.ctr.packets.Load() + 1
	byts := sa.ctr.bytes.Load() + uint64(n)
	sa.ctr.packets.Store(pkts)
	sa.ctr.bytes.Store(byts)
	if x := sa.ext; x != nil && (pkts >= x.nextPkts || byts >= x.nextByts) {
		sa.checkLifetimes()
	}
}

func (sa *SA) checkLifetimes() {
	x := sa.ext
	if x == nil {
		return
	}
	l := &x.life
	pkts, byts := sa.ctr.packets.Load(), sa.ctr.bytes.Load()
	if (l.HardPackets != 0 && pkts >= l.HardPackets) || (l.HardBytes != 0 && byts >= l.HardBytes) {
		sa.expired = true
		sa.raise(EventHardLifetime | EventSoftLifetime)
		x.nextPkts, x.nextByts = ^uint64(0), ^uint64(0)
		return
	}
	if (l.SoftPackets != 0 && pkts >= l.SoftPackets) || (l.SoftBytes != 0 && byts >= l.SoftBytes) {
		if sa.raised&EventSoftLifetime == 0 {
			sa.raise(EventSoftLifetime)
			sa.resetThresholds()
		}
	}
}

// State is an SA's mutable state, for moving it to another core (or
// another process) and restoring it on an SA built from the same Config.
type State struct {
	// SPI and Direction name the SA the state is of, so that it is not
	// restored on another.
	SPI       uint32
	Direction Direction
	// Seq is the last sequence number sent (outbound).
	Seq uint64
	// Replay is the anti-replay window (inbound).
	Replay replay.State
	// Packets and Bytes are the lifetime usage and the success counters.
	Packets, Bytes uint64
	// Drops counts the dropped packets by reason.
	Drops [NumReasons]uint64
	// Raised and Pending are the events already raised and not yet taken.
	Raised, Pending Events
	// IPID is the next outer IPv4 identification.
	IPID uint16
}

// State captures the SA's state. Owner only (or with the owner stopped);
// it allocates.
func (sa *SA) State() State {
	st := State{
		SPI: sa.spi, Direction: sa.dir, Seq: sa.seq.Load(),
		Packets: sa.ctr.packets.Load(), Bytes: sa.ctr.bytes.Load(),
		Raised: sa.raised, Pending: sa.events, IPID: sa.ipID,
	}
	if sa.dir == Inbound {
		st.Replay = sa.win.State()
	}
	if d := sa.ctr.drops.Load(); d != nil {
		for i := range st.Drops {
			st.Drops[i] = d[i].Load()
		}
	}
	return st
}

// Restore loads st, taken with State from an SA of the same SPI and
// direction, into sa (normally freshly made by NewSA from the same Config).
func (sa *SA) Restore(st State) error {
	if st.SPI != sa.spi || st.Direction != sa.dir {
		return fmt.Errorf("esp: sa 0x%08x %s: state is of sa 0x%08x %s", sa.spi, sa.dir, st.SPI, st.Direction)
	}
	if st.Seq > sa.seqMax() {
		return fmt.Errorf("esp: sa 0x%08x: sequence number %d exceeds the SA's space", sa.spi, st.Seq)
	}
	if sa.dir == Inbound {
		if err := sa.win.Restore(st.Replay); err != nil {
			return fmt.Errorf("esp: sa 0x%08x: %w", sa.spi, err)
		}
	}
	sa.seq.Store(st.Seq)
	sa.ctr.packets.Store(st.Packets)
	sa.ctr.bytes.Store(st.Bytes)
	sa.raised, sa.events = st.Raised, st.Pending
	sa.ipID = st.IPID
	sa.expired = sa.raised&(EventHardLifetime) != 0
	if st.Drops != ([NumReasons]uint64{}) || sa.ctr.drops.Load() != nil {
		d := sa.ctr.drops.Load()
		if d == nil {
			d = new([NumReasons]counter)
			sa.ctr.drops.Store(d)
		}
		for i := range st.Drops {
			d[i].Store(st.Drops[i])
		}
	}
	sa.resetThresholds()
	if sa.w != nil {
		sa.resetIVs(sa.w)
	}
	sa.publish()
	return nil
}
