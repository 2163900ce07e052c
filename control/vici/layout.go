package vici

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
)

// This file lays iked's IKE SAs and connections out as charon does in
// its list-sa, list-conn and up/down events, key by key, so that swanctl
// prints them as it prints charon's and a govici program reads the same
// keys.

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// algs splits a proposal as iked formats it (strongSwan's log style:
// "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384", transforms in the
// order encryption, integrity, PRF, key exchange, ESN) into charon's
// list-sa keys.
type algs struct {
	encr, encrKeySize, integ, prf, group string
	esn                                  bool
}

func splitProposal(p string) algs {
	var a algs
	if i := strings.IndexByte(p, ':'); i >= 0 {
		p = p[i+1:]
	}
	if p == "" {
		return a
	}
	for i, t := range strings.Split(p, "/") {
		switch {
		case i == 0:
			// AES names end in their key length; ChaCha20-Poly1305
			// has none.
			a.encr = t
			if j := strings.LastIndexByte(t, '_'); j > 0 {
				switch t[j+1:] {
				case "128", "192", "256":
					a.encr, a.encrKeySize = t[:j], t[j+1:]
				}
			}
		case strings.HasPrefix(t, "PRF_"):
			a.prf = t
		case strings.HasPrefix(t, "MODP_"), strings.HasPrefix(t, "ECP_"), strings.HasPrefix(t, "CURVE_"), strings.HasPrefix(t, "KE_"):
			a.group = t
		case t == "EXT_SEQ":
			a.esn = true
		case t == "NO_EXT_SEQ", t == "NONE":
		default:
			a.integ = t
		}
	}
	return a
}

func secs(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// durSecs is a duration as ikectl writes it (Go's form, "" for none) in
// charon's whole seconds, "0" for none.
func durSecs(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return "0"
	}
	return secs(d)
}

// IKESA adds an IKE SA to m as charon's list-sa and updown events hold
// it: a section named after its connection, with its Child SAs in
// child-sas, each named "name-uniqueid" as charon names them.
func IKESA(m *Section, s *ikectl.IKESA, now time.Time) *Section {
	name := s.Conn
	if name == "" {
		// A responder's IKE SA before IKE_AUTH chose its connection.
		name = "(unnamed)"
	}
	ike := m.AddSection(name)
	// Room for every key at once: appended one by one, the elements were
	// most of a listing's garbage.
	ike.Elements = make([]Element, 0, 28)
	ike.Set("uniqueid", strconv.FormatUint(uint64(s.UniqueID), 10)).
		Set("version", "2").
		Set("state", s.State).
		Set("local-host", s.Local.Addr().String()).
		Set("local-port", strconv.Itoa(int(s.Local.Port()))).
		Set("local-id", s.LocalID).
		Set("remote-host", s.Remote.Addr().String()).
		Set("remote-port", strconv.Itoa(int(s.Remote.Port()))).
		Set("remote-id", s.RemoteID).
		Set("initiator", yesNo(s.Initiator)).
		Set("initiator-spi", s.SPIi).
		Set("responder-spi", s.SPIr)
	if s.NATLocal {
		ike.Set("nat-local", "yes")
	}
	if s.NATRemote {
		ike.Set("nat-remote", "yes")
	}
	if s.NATLocal || s.NATRemote {
		ike.Set("nat-any", "yes")
	}
	a := splitProposal(s.Proposal)
	if a.encr != "" {
		ike.Set("encr-alg", a.encr)
		if a.encrKeySize != "" {
			ike.Set("encr-keysize", a.encrKeySize)
		}
		if a.integ != "" {
			ike.Set("integ-alg", a.integ)
		}
		ike.Set("prf-alg", a.prf).Set("dh-group", a.group)
	}
	if !s.Established.IsZero() {
		ike.Set("established", secs(now.Sub(s.Established)))
		if s.RekeyIn > 0 {
			ike.Set("rekey-time", secs(s.RekeyIn))
		}
	}
	// spugate's own keys, which charon does not have: where the tunnel
	// is anchored.
	ike.Set("spu", strconv.Itoa(s.SPU)).Set("logical-spu", strconv.Itoa(s.Logical))
	children := ike.AddSection("child-sas")
	for i := range s.Children {
		ChildSA(children, &s.Children[i], now)
	}
	return ike
}

// ChildSA adds a Child SA to a child-sas section as charon lays it out.
func ChildSA(m *Section, c *ikectl.ChildSA, now time.Time) *Section {
	ch := m.AddSection(fmt.Sprintf("%s-%d", c.Name, c.UniqueID))
	childKeys(ch, c, now)
	return ch
}

func childKeys(ch *Section, c *ikectl.ChildSA, now time.Time) {
	ch.Elements = make([]Element, 0, 24)
	ch.Set("name", c.Name).
		Set("uniqueid", strconv.FormatUint(uint64(c.UniqueID), 10)).
		Set("reqid", strconv.FormatUint(uint64(c.ReqID), 10)).
		Set("state", c.State).
		Set("mode", "TUNNEL").
		Set("protocol", "ESP")
	if c.Encap {
		ch.Set("encap", "yes")
	}
	ch.Set("spi-in", fmt.Sprintf("%08x", c.SPIIn)).Set("spi-out", fmt.Sprintf("%08x", c.SPIOut))
	a := splitProposal(c.Proposal)
	if a.encr != "" {
		ch.Set("encr-alg", a.encr)
		if a.encrKeySize != "" {
			ch.Set("encr-keysize", a.encrKeySize)
		}
	}
	if a.integ != "" {
		ch.Set("integ-alg", a.integ)
	}
	if a.group != "" {
		ch.Set("dh-group", a.group)
	}
	if a.esn {
		ch.Set("esn", "1")
	}
	ch.Set("bytes-in", strconv.FormatUint(c.BytesIn, 10)).
		Set("packets-in", strconv.FormatUint(c.PacketsIn, 10)).
		Set("bytes-out", strconv.FormatUint(c.BytesOut, 10)).
		Set("packets-out", strconv.FormatUint(c.PktsOut, 10))
	if c.RekeyIn > 0 {
		ch.Set("rekey-time", secs(c.RekeyIn))
	}
	if c.ExpireIn > 0 {
		ch.Set("life-time", secs(c.ExpireIn))
	}
	if !c.Installed.IsZero() {
		ch.Set("install-time", secs(now.Sub(c.Installed)))
	} else {
		ch.Set("install-time", "0")
	}
	ch.SetList("local-ts", orEmpty(c.LocalTS)).SetList("remote-ts", orEmpty(c.RemoteTS))
	if c.SPU >= 0 {
		ch.Set("spu", strconv.Itoa(c.SPU))
	}
}

func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// authClass is charon's name of an authentication method, as list-conns
// shows it ("pre-shared key", "public key").
func authClass(auth string) string {
	switch auth {
	case "psk":
		return "pre-shared key"
	case "":
		return "any"
	}
	// pubkey, rsa/pss-sha256, ecdsa-sha384...: swanctl's notations of
	// signatures, all charon's "public key".
	return "public key"
}

// Conn adds a configured connection to m as charon's list-conn event
// holds it.
func Conn(m *Section, c *ikectl.Conn) *Section {
	s := m.AddSection(c.Name)
	s.SetList("local_addrs", orEmpty(c.LocalAddrs)).
		SetList("remote_addrs", orEmpty(c.RemoteAddrs)).
		Set("version", "IKEv2").
		Set("reauth_time", secs(c.ReauthTime)).
		Set("rekey_time", secs(c.RekeyTime))
	if c.DPDDelay != "" {
		if d, err := time.ParseDuration(c.DPDDelay); err == nil {
			s.Set("dpd_delay", secs(d))
		}
	}
	if c.Encap {
		s.Set("encap", "yes")
	}
	s.SetList("proposals", orEmpty(c.Proposals))
	local := s.AddSection("local-1")
	local.Set("class", authClass(c.LocalAuth))
	if c.LocalID != "" {
		local.Set("id", c.LocalID)
	}
	remote := s.AddSection("remote-1")
	remote.Set("class", authClass(c.RemoteAuth))
	if c.RemoteID != "" {
		remote.Set("id", c.RemoteID)
	}
	children := s.AddSection("children")
	for _, ch := range c.Children {
		cs := children.AddSection(ch.Name)
		cs.Set("mode", "TUNNEL")
		cs.Set("rekey_time", durSecs(ch.RekeyTime)).Set("rekey_bytes", "0").Set("rekey_packets", "0")
		if ch.DPDAction != "" {
			cs.Set("dpd_action", ch.DPDAction)
		} else {
			cs.Set("dpd_action", "clear")
		}
		if ch.StartAction != "" {
			cs.Set("start_action", ch.StartAction)
		}
		if ch.CloseAction != "" {
			cs.Set("close_action", ch.CloseAction)
		}
		cs.SetList("esp_proposals", orEmpty(ch.ESPProposals))
		cs.SetList("local-ts", orEmpty(ch.LocalTS)).SetList("remote-ts", orEmpty(ch.RemoteTS))
	}
	return s
}
