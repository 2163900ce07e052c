package strongswan

import (
	"fmt"
	"net/netip"
	"strconv"
)

// IKESA is an IKE SA as charon lists it (VICI list-sa event).
type IKESA struct {
	Name       string // connection name
	UniqueID   uint32
	Version    int
	State      string // CREATED, CONNECTING, ESTABLISHED, PASSIVE, REKEYING, REKEYED, DELETING, DESTROYING
	LocalHost  netip.Addr
	LocalPort  uint16
	LocalID    string
	RemoteHost netip.Addr
	RemotePort uint16
	RemoteID   string
	Initiator  bool
	// SPIs as charon prints them: 16 hex digits, network byte order.
	InitiatorSPI string
	ResponderSPI string
	NATLocal     bool
	NATRemote    bool
	NATFake      bool // NAT faked (kernel-libipsec always moves to 4500)
	NATAny       bool
	EncrAlg      string // e.g. AES_GCM_16, AES_CBC
	EncrKeySize  int
	IntegAlg     string // e.g. HMAC_SHA2_256_128; "" for AEAD
	IntegKeySize int
	PRFAlg       string // e.g. PRF_HMAC_SHA2_256
	DHGroup      string // e.g. CURVE_25519, MODP_2048
	Established  int64  // seconds since established
	RekeyTime    int64  // seconds until rekeying; 0 if none scheduled
	ReauthTime   int64
	TasksQueued  []string
	TasksActive  []string
	TasksPassive []string
	Children     []ChildSA
	// Raw is the whole entry, for fields not named here.
	Raw *Section
}

// ChildSA is a Child SA of an IKE SA.
type ChildSA struct {
	Name         string // child config name
	UniqueID     uint32
	ReqID        uint32
	State        string // INSTALLED, REKEYING, REKEYED, DELETING...
	Mode         string // TUNNEL, TRANSPORT
	Protocol     string // ESP, AH
	Encap        bool   // UDP encapsulation
	SPIIn        uint32
	SPIOut       uint32
	EncrAlg      string
	EncrKeySize  int
	IntegAlg     string
	IntegKeySize int
	PRFAlg       string
	DHGroup      string
	ESN          bool
	BytesIn      uint64
	PacketsIn    uint64
	BytesOut     uint64
	PacketsOut   uint64
	UseIn        int64 // seconds since the last inbound packet, -1 if none
	UseOut       int64
	RekeyTime    int64 // seconds until rekeying
	LifeTime     int64 // seconds until expiry
	InstallTime  int64 // seconds since installed
	LocalTS      []string
	RemoteTS     []string
	Raw          *Section
}

// Ready reports whether the IKE SA is established.
func (s *IKESA) Ready() bool { return s.State == "ESTABLISHED" }

// Child returns the first child SA called name in state INSTALLED, or nil.
func (s *IKESA) Child(name string) *ChildSA {
	for i := range s.Children {
		if s.Children[i].Name == name && s.Children[i].State == "INSTALLED" {
			return &s.Children[i]
		}
	}
	return nil
}

// fieldErr collects the first conversion error with the field's name.
type fieldErr struct {
	where string
	err   error
}

func (f *fieldErr) set(key string, err error) {
	if f.err == nil && err != nil {
		f.err = fmt.Errorf("strongswan: %s: %s: %w", f.where, key, err)
	}
}

func (f *fieldErr) int(s *Section, key string) int64 {
	v, ok := s.Lookup(key)
	if !ok || v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	f.set(key, err)
	return n
}

func (f *fieldErr) uint(s *Section, key string) uint64 {
	v, ok := s.Lookup(key)
	if !ok || v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	f.set(key, err)
	return n
}

func (f *fieldErr) hex32(s *Section, key string) uint32 {
	v, ok := s.Lookup(key)
	if !ok || v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 16, 32)
	f.set(key, err)
	return uint32(n)
}

func (f *fieldErr) addr(s *Section, key string) netip.Addr {
	v, ok := s.Lookup(key)
	if !ok || v == "" || v == "%any" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(v)
	f.set(key, err)
	return a
}

func yes(s *Section, key string) bool {
	v := s.Get(key)
	return v == "yes" || v == "1"
}

// parseIKESAs converts list-sa events (one IKE SA each) to IKESAs.
func parseIKESAs(events []*Section) ([]IKESA, error) {
	var out []IKESA
	for _, ev := range events {
		for _, e := range ev.Subs() {
			sa, err := parseIKESA(e.Name, e.Section)
			if err != nil {
				return nil, err
			}
			out = append(out, sa)
		}
	}
	return out, nil
}

func parseIKESA(name string, s *Section) (IKESA, error) {
	f := &fieldErr{where: "ike sa " + name}
	sa := IKESA{
		Name:         name,
		UniqueID:     uint32(f.uint(s, "uniqueid")),
		Version:      int(f.int(s, "version")),
		State:        s.Get("state"),
		LocalHost:    f.addr(s, "local-host"),
		LocalPort:    uint16(f.uint(s, "local-port")),
		LocalID:      s.Get("local-id"),
		RemoteHost:   f.addr(s, "remote-host"),
		RemotePort:   uint16(f.uint(s, "remote-port")),
		RemoteID:     s.Get("remote-id"),
		Initiator:    yes(s, "initiator"),
		InitiatorSPI: s.Get("initiator-spi"),
		ResponderSPI: s.Get("responder-spi"),
		NATLocal:     yes(s, "nat-local"),
		NATRemote:    yes(s, "nat-remote"),
		NATFake:      yes(s, "nat-fake"),
		NATAny:       yes(s, "nat-any"),
		EncrAlg:      s.Get("encr-alg"),
		EncrKeySize:  int(f.int(s, "encr-keysize")),
		IntegAlg:     s.Get("integ-alg"),
		IntegKeySize: int(f.int(s, "integ-keysize")),
		PRFAlg:       s.Get("prf-alg"),
		DHGroup:      s.Get("dh-group"),
		Established:  f.int(s, "established"),
		RekeyTime:    f.int(s, "rekey-time"),
		ReauthTime:   f.int(s, "reauth-time"),
		TasksQueued:  s.List("tasks-queued"),
		TasksActive:  s.List("tasks-active"),
		TasksPassive: s.List("tasks-passive"),
		Raw:          s,
	}
	for _, e := range s.Sub("child-sas").Subs() {
		c := e.Section
		cf := &fieldErr{where: "ike sa " + name + " child sa " + e.Name}
		ch := ChildSA{
			Name:         c.Get("name"),
			UniqueID:     uint32(cf.uint(c, "uniqueid")),
			ReqID:        uint32(cf.uint(c, "reqid")),
			State:        c.Get("state"),
			Mode:         c.Get("mode"),
			Protocol:     c.Get("protocol"),
			Encap:        yes(c, "encap"),
			SPIIn:        cf.hex32(c, "spi-in"),
			SPIOut:       cf.hex32(c, "spi-out"),
			EncrAlg:      c.Get("encr-alg"),
			EncrKeySize:  int(cf.int(c, "encr-keysize")),
			IntegAlg:     c.Get("integ-alg"),
			IntegKeySize: int(cf.int(c, "integ-keysize")),
			PRFAlg:       c.Get("prf-alg"),
			DHGroup:      c.Get("dh-group"),
			ESN:          yes(c, "esn"),
			BytesIn:      cf.uint(c, "bytes-in"),
			PacketsIn:    cf.uint(c, "packets-in"),
			BytesOut:     cf.uint(c, "bytes-out"),
			PacketsOut:   cf.uint(c, "packets-out"),
			UseIn:        -1,
			UseOut:       -1,
			RekeyTime:    cf.int(c, "rekey-time"),
			LifeTime:     cf.int(c, "life-time"),
			InstallTime:  cf.int(c, "install-time"),
			LocalTS:      c.List("local-ts"),
			RemoteTS:     c.List("remote-ts"),
			Raw:          c,
		}
		if ch.Name == "" {
			// The section is named <name>-<uniqueid> in newer
			// releases and carries "name"; older ones name it alone.
			ch.Name = e.Name
		}
		if _, ok := c.Lookup("use-in"); ok {
			ch.UseIn = cf.int(c, "use-in")
		}
		if _, ok := c.Lookup("use-out"); ok {
			ch.UseOut = cf.int(c, "use-out")
		}
		if cf.err != nil {
			return IKESA{}, cf.err
		}
		sa.Children = append(sa.Children, ch)
	}
	if f.err != nil {
		return IKESA{}, f.err
	}
	return sa, nil
}

// ConnInfo is a loaded connection as charon lists it (list-conn event).
type ConnInfo struct {
	Name        string
	LocalAddrs  []string
	RemoteAddrs []string
	Version     string // IKEv1, IKEv2 or 0 (any)
	RekeyTime   int64
	Local       []AuthInfo
	Remote      []AuthInfo
	Children    []ChildInfo
	Raw         *Section
}

// AuthInfo is an authentication round of a loaded connection.
type AuthInfo struct {
	Class   string // "pre-shared key", "public key"...
	ID      string
	Certs   []string
	CACerts []string
}

// ChildInfo is a child config of a loaded connection.
type ChildInfo struct {
	Name     string
	Mode     string
	LocalTS  []string
	RemoteTS []string
}

func parseConns(events []*Section) ([]ConnInfo, error) {
	var out []ConnInfo
	for _, ev := range events {
		for _, e := range ev.Subs() {
			s := e.Section
			f := &fieldErr{where: "connection " + e.Name}
			ci := ConnInfo{
				Name:        e.Name,
				LocalAddrs:  s.List("local_addrs"),
				RemoteAddrs: s.List("remote_addrs"),
				Version:     s.Get("version"),
				RekeyTime:   f.int(s, "rekey_time"),
				Raw:         s,
			}
			if f.err != nil {
				return nil, f.err
			}
			for _, sub := range s.Subs() {
				a := AuthInfo{Class: sub.Section.Get("class"), ID: sub.Section.Get("id"),
					Certs: sub.Section.List("certs"), CACerts: sub.Section.List("cacerts")}
				switch {
				case len(sub.Name) >= 5 && sub.Name[:5] == "local":
					ci.Local = append(ci.Local, a)
				case len(sub.Name) >= 6 && sub.Name[:6] == "remote":
					ci.Remote = append(ci.Remote, a)
				}
			}
			for _, ch := range s.Sub("children").Subs() {
				ci.Children = append(ci.Children, ChildInfo{Name: ch.Name, Mode: ch.Section.Get("mode"),
					LocalTS: ch.Section.List("local-ts"), RemoteTS: ch.Section.List("remote-ts")})
			}
			out = append(out, ci)
		}
	}
	return out, nil
}
