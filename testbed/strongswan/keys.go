package strongswan

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Key dumping. With Config.DumpKeys charon logs at level 4 for ike, chd
// and esp, and the filelog (time_format, ike_name) then carries, per
// thread, in this order (5.9.8):
//
//	... 09[IKE] <site|1> Sk_d secret => 32 bytes @ 0x7f73...
//	... 09[IKE] <site|1>    0: F9 47 DC E4 ...  (hex dump, 16 bytes a line)
//	    (then Sk_ai, Sk_ar with an integrity algorithm, Sk_ei, Sk_er, Sk_pi, Sk_pr)
//	... 11[IKE] <site|1> establishing CHILD_SA net{1}        (exchange initiator only)
//	... 09[CHD] <site|1> CHILD_SA net{1} state change: CREATED => INSTALLING
//	... 09[CHD] <site|1>   using AES_GCM_16 for encryption
//	... 09[CHD] <site|1>   using HMAC_SHA2_256_128 for integrity (not for AEAD)
//	... 09[CHD] <site|1> encryption initiator key => 20 bytes @ ...   (+ dump)
//	... 09[CHD] <site|1> encryption responder key => 20 bytes @ ...   (+ dump)
//	... 09[CHD] <site|1> integrity initiator key => 32 bytes @ ...    (not for AEAD)
//	... 09[CHD] <site|1> integrity responder key => 32 bytes @ ...
//	... 09[CHD] <site|1> adding inbound ESP SA
//	... 09[CHD] <site|1>   SPI 0x85a07fb4, src 198.18.0.2 dst 198.18.0.1
//	... 09[IKE] <site|1> CHILD_SA net{1} established with SPIs 85a07fb4_i 720445a2_o and TS ...
//
// AEAD keys include their salt (AES-GCM-128: 16 + 4 bytes), as RFC 4106
// KEYMAT and tshark's ESP preferences want them. The "initiator" keys
// protect traffic from the initiator of the exchange that made the Child
// SA (RFC 7296 2.17), so which of them is inbound depends on whether this
// charon initiated it: "establishing CHILD_SA" says so.

// IKEKeys are an IKE SA's keys as charon logged them.
type IKEKeys struct {
	Name string // connection name from the log prefix
	// UniqueID is the IKE SA whose log context derived the keys: the SA
	// itself, or for a rekeyed IKE SA the old one that ran the rekey.
	UniqueID uint32
	// SPIs (16 hex digits) when Charon.Keys could match the SA in
	// list-sas; empty otherwise.
	InitiatorSPI, ResponderSPI string

	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// ChildKeys are a Child SA's keys, oriented for this charon.
type ChildKeys struct {
	Name        string // child config name
	UniqueID    uint32 // the {N} of CHILD_SA name{N}
	IKEName     string
	IKEUniqueID uint32
	Initiator   bool // this charon initiated the exchange that made it
	SPIIn       uint32
	SPIOut      uint32
	// InSrc and InDst are the outer addresses of the inbound SA (the
	// peer and us as this host sees them); outbound is the reverse.
	InSrc, InDst netip.Addr
	EncrAlg      string // charon's name, e.g. AES_GCM_16, AES_CBC
	IntegAlg     string // "" for AEAD
	EncrIn       []byte
	EncrOut      []byte
	IntegIn      []byte
	IntegOut     []byte
}

var (
	logLineRe   = regexp.MustCompile(`^\S+ \S+ (\d+)\[(\w+)\] (?:<(?:([^|>]*)\|)?(\d+)> )?(.*)$`)
	dumpHeadRe  = regexp.MustCompile(`^(.+?) => (\d+) bytes @ 0x[0-9a-f]+$`)
	dumpLineRe  = regexp.MustCompile(`^\s*(\d+): (.*)$`)
	childStRe   = regexp.MustCompile(`^CHILD_SA (\S+)\{(\d+)\} state change: \S+ => INSTALLING$`)
	childInitRe = regexp.MustCompile(`^establishing CHILD_SA (\S+)\{(\d+)\}`)
	childUpRe   = regexp.MustCompile(`^CHILD_SA (\S+)\{(\d+)\} established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o`)
	usingRe     = regexp.MustCompile(`^  using (\S+) for (encryption|integrity)$`)
	addingRe    = regexp.MustCompile(`^adding (inbound|outbound) ESP SA$`)
	spiLineRe   = regexp.MustCompile(`^  SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)$`)
)

// keyThread is what one charon thread is in the middle of.
type keyThread struct {
	dump      string // name of the hex dump being read
	dumpLen   int
	dumpBytes []byte
	dumpIKE   uint32
	dumpName  string
	child     *childRaw // the child SA being installed
	adding    string    // inbound/outbound: the next SPI line is its
}

type childRaw struct {
	ChildKeys
	encrI, encrR, integI, integR []byte
	inSrc, inDst                 netip.Addr
}

// ParseKeys extracts IKE and Child SA keys from a filelog written with
// Config.DumpKeys (time_format and ike_name on, as Start sets them).
// Lines it does not know are skipped; a malformed hex dump is an error.
func ParseKeys(log string) ([]IKEKeys, []ChildKeys, error) {
	threads := map[string]*keyThread{}
	var ikes []*IKEKeys
	lastIKE := map[uint32]*IKEKeys{}
	children := map[uint32]*childRaw{}
	var order []uint32
	initiated := map[uint32]bool{}

	child := func(name string, id uint32) *childRaw {
		c := children[id]
		if c == nil {
			c = &childRaw{ChildKeys: ChildKeys{Name: name, UniqueID: id}}
			children[id] = c
			order = append(order, id)
		}
		return c
	}

	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		m := logLineRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		th := threads[m[1]]
		if th == nil {
			th = &keyThread{}
			threads[m[1]] = th
		}
		ikeName, msg := m[3], m[5]
		var ikeID uint32
		if m[4] != "" {
			n, _ := strconv.ParseUint(m[4], 10, 32)
			ikeID = uint32(n)
		}

		if th.dump != "" {
			dm := dumpLineRe.FindStringSubmatch(msg)
			if dm == nil {
				return nil, nil, fmt.Errorf("strongswan: log line %d: hex dump of %q ends after %d of %d bytes", lineNo, th.dump, len(th.dumpBytes), th.dumpLen)
			}
			want := min(16, th.dumpLen-len(th.dumpBytes))
			fields := strings.Fields(dm[2])
			if len(fields) < want {
				return nil, nil, fmt.Errorf("strongswan: log line %d: hex dump of %q: %d bytes on a line, want %d", lineNo, th.dump, len(fields), want)
			}
			for _, f := range fields[:want] {
				b, err := hex.DecodeString(f)
				if err != nil || len(b) != 1 {
					return nil, nil, fmt.Errorf("strongswan: log line %d: hex dump of %q: bad byte %q", lineNo, th.dump, f)
				}
				th.dumpBytes = append(th.dumpBytes, b[0])
			}
			if len(th.dumpBytes) == th.dumpLen {
				name, data := th.dump, th.dumpBytes
				th.dump, th.dumpBytes = "", nil
				switch name {
				case "Sk_d secret", "Sk_ai secret", "Sk_ar secret", "Sk_ei secret", "Sk_er secret", "Sk_pi secret", "Sk_pr secret":
					k := lastIKE[th.dumpIKE]
					if name == "Sk_d secret" || k == nil {
						k = &IKEKeys{Name: th.dumpName, UniqueID: th.dumpIKE}
						ikes = append(ikes, k)
						lastIKE[th.dumpIKE] = k
					}
					switch name {
					case "Sk_d secret":
						k.SKd = data
					case "Sk_ai secret":
						k.SKai = data
					case "Sk_ar secret":
						k.SKar = data
					case "Sk_ei secret":
						k.SKei = data
					case "Sk_er secret":
						k.SKer = data
					case "Sk_pi secret":
						k.SKpi = data
					case "Sk_pr secret":
						k.SKpr = data
					}
				case "encryption initiator key", "encryption responder key", "integrity initiator key", "integrity responder key":
					if th.child == nil {
						break // keys of an SA we do not follow (e.g. IKEv1)
					}
					switch name {
					case "encryption initiator key":
						th.child.encrI = data
					case "encryption responder key":
						th.child.encrR = data
					case "integrity initiator key":
						th.child.integI = data
					case "integrity responder key":
						th.child.integR = data
					}
				}
			}
			continue
		}

		if dm := dumpHeadRe.FindStringSubmatch(msg); dm != nil {
			n, err := strconv.Atoi(dm[2])
			if err != nil || n > 1<<16 {
				return nil, nil, fmt.Errorf("strongswan: log line %d: dump length %q", lineNo, dm[2])
			}
			if n > 0 {
				th.dump, th.dumpLen, th.dumpBytes, th.dumpIKE, th.dumpName = dm[1], n, nil, ikeID, ikeName
			}
			continue
		}
		if cm := childInitRe.FindStringSubmatch(msg); cm != nil {
			id, _ := strconv.ParseUint(cm[2], 10, 32)
			initiated[uint32(id)] = true
			continue
		}
		if cm := childStRe.FindStringSubmatch(msg); cm != nil {
			id, _ := strconv.ParseUint(cm[2], 10, 32)
			th.child = child(cm[1], uint32(id))
			th.child.IKEName, th.child.IKEUniqueID = ikeName, ikeID
			continue
		}
		if um := usingRe.FindStringSubmatch(msg); um != nil && th.child != nil {
			if um[2] == "encryption" {
				th.child.EncrAlg = um[1]
			} else {
				th.child.IntegAlg = um[1]
			}
			continue
		}
		if am := addingRe.FindStringSubmatch(msg); am != nil {
			th.adding = am[1]
			continue
		}
		if sm := spiLineRe.FindStringSubmatch(msg); sm != nil && th.adding != "" {
			if th.adding == "inbound" && th.child != nil {
				th.child.inSrc, _ = netip.ParseAddr(sm[2])
				th.child.inDst, _ = netip.ParseAddr(sm[3])
			}
			th.adding = ""
			continue
		}
		if um := childUpRe.FindStringSubmatch(msg); um != nil {
			id, _ := strconv.ParseUint(um[2], 10, 32)
			c := child(um[1], uint32(id))
			in, _ := strconv.ParseUint(um[3], 16, 32)
			out, _ := strconv.ParseUint(um[4], 16, 32)
			c.SPIIn, c.SPIOut = uint32(in), uint32(out)
			if th.child == c {
				th.child = nil
			}
			continue
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("strongswan: reading log: %w", err)
	}

	var out []ChildKeys
	for _, id := range order {
		c := children[id]
		if c.SPIIn == 0 || c.encrI == nil {
			continue // never established, or no keys logged
		}
		c.Initiator = initiated[id]
		c.InSrc, c.InDst = c.inSrc, c.inDst
		if c.Initiator {
			c.EncrIn, c.EncrOut, c.IntegIn, c.IntegOut = c.encrR, c.encrI, c.integR, c.integI
		} else {
			c.EncrIn, c.EncrOut, c.IntegIn, c.IntegOut = c.encrI, c.encrR, c.integI, c.integR
		}
		out = append(out, c.ChildKeys)
	}
	ikeOut := make([]IKEKeys, len(ikes))
	for i, k := range ikes {
		ikeOut[i] = *k
	}
	return ikeOut, out, nil
}

// Keys parses the instance's filelog for keys (Config.DumpKeys must be
// on) and fills the IKE SPIs of the IKE SAs list-sas still knows.
func (c *Charon) Keys() ([]IKEKeys, []ChildKeys, error) {
	ikes, children, err := ParseKeys(c.Log())
	if err != nil {
		return nil, nil, err
	}
	sas, err := c.ListSAs()
	if err != nil {
		return nil, nil, err
	}
	for i := range ikes {
		for _, sa := range sas {
			// A rekeyed IKE SA's keys are logged under the old SA, so
			// only the last key set of a unique id matches its SPIs.
			if sa.UniqueID == ikes[i].UniqueID && lastOf(ikes, i) {
				ikes[i].InitiatorSPI, ikes[i].ResponderSPI = sa.InitiatorSPI, sa.ResponderSPI
			}
		}
	}
	return ikes, children, nil
}

func lastOf(ikes []IKEKeys, i int) bool {
	for j := i + 1; j < len(ikes); j++ {
		if ikes[j].UniqueID == ikes[i].UniqueID {
			return false
		}
	}
	return true
}

// tshark's names (Wireshark 4.0 packet-esp.c) for charon's algorithms.
var (
	tsharkEncr = map[string]string{
		"AES_CBC":           "AES-CBC [RFC3602]",
		"AES_CTR":           "AES-CTR [RFC3686]",
		"AES_GCM_8":         "AES-GCM with 8 octet ICV [RFC4106]",
		"AES_GCM_12":        "AES-GCM with 12 octet ICV [RFC4106]",
		"AES_GCM_16":        "AES-GCM with 16 octet ICV [RFC4106]",
		"CHACHA20_POLY1305": "ChaCha20 with Poly1305 [RFC7634]",
		"NULL":              "NULL",
	}
	tsharkInteg = map[string]string{
		"":                  "NULL",
		"HMAC_SHA1_96":      "HMAC-SHA-1-96 [RFC2404]",
		"HMAC_SHA2_256_128": "HMAC-SHA-256-128 [RFC4868]",
		"HMAC_SHA2_384_192": "HMAC-SHA-384-192 [RFC4868]",
		"HMAC_SHA2_512_256": "HMAC-SHA-512-256 [RFC4868]",
	}
)

// TsharkESPSAs returns tshark's esp_sa table entries (one per direction)
// for k, to decrypt a capture: pass each as
// `-o uat:esp_sa:<entry>` with `-o esp.enable_encryption_decode:TRUE`.
func (k ChildKeys) TsharkESPSAs() ([]string, error) {
	encr, ok := tsharkEncr[k.EncrAlg]
	if !ok {
		return nil, fmt.Errorf("strongswan: no tshark name for encryption algorithm %s", k.EncrAlg)
	}
	integ, ok := tsharkInteg[k.IntegAlg]
	if !ok {
		return nil, fmt.Errorf("strongswan: no tshark name for integrity algorithm %s", k.IntegAlg)
	}
	if !k.InSrc.IsValid() || !k.InDst.IsValid() {
		return nil, fmt.Errorf("strongswan: child SA %s{%d}: addresses not in the log", k.Name, k.UniqueID)
	}
	fam := "IPv4"
	if k.InSrc.Is6() {
		fam = "IPv6"
	}
	entry := func(src, dst netip.Addr, spi uint32, ek, ik []byte) string {
		ikHex := ""
		if len(ik) > 0 {
			ikHex = "0x" + hex.EncodeToString(ik)
		}
		return fmt.Sprintf(`"%s","%s","%s","0x%08x","%s","0x%s","%s","%s"`, fam, src, dst, spi, encr, hex.EncodeToString(ek), integ, ikHex)
	}
	return []string{
		entry(k.InSrc, k.InDst, k.SPIIn, k.EncrIn, k.IntegIn),
		entry(k.InDst, k.InSrc, k.SPIOut, k.EncrOut, k.IntegOut),
	}, nil
}
