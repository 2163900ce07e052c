package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spugate/spugate/control/pki"
)

// IKE identification types (RFC 7296 3.5).
const (
	IDIPv4   = 1
	IDFQDN   = 2
	IDRFC822 = 3
	IDIPv6   = 5
	IDDN     = 9
	IDKeyID  = 11
	idAny    = 0
)

// Identity is an IKE identity as configured: its type and its payload data
// (what goes on the wire in IDi/IDr), and the text it came from.
type Identity struct {
	Type uint8
	Data []byte
	Text string
}

// Any reports whether the identity is %any (matches every peer).
func (id Identity) Any() bool { return id.Type == idAny }

// String returns the identity as it was configured (%any, an address,
// a DN...), not a rendering of Data: logs then match the configuration.
func (id Identity) String() string { return id.Text }

// ParseIdentity reads an identity in strongSwan's notation: an IP address;
// "@fqdn" or a bare host name (FQDN); "user@domain" (RFC 822); "@#hex"
// (KEY_ID); a distinguished name "C=CH, O=Org, CN=gw" (DER_ASN1_DN); with an
// optional explicit type prefix "fqdn:", "email:", "keyid:", "ipv4:",
// "ipv6:", "asn1dn:". "%any" matches anyone. "*" in an FQDN or RFC 822
// identity is a wildcard.
func ParseIdentity(s string) (Identity, error) {
	s = strings.TrimSpace(s)
	id := Identity{Text: s}
	if s == "" {
		return id, fmt.Errorf("empty identity")
	}
	if s == "%any" || s == "*" {
		id.Type = idAny
		return id, nil
	}
	if typ, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(typ, "=") {
		switch strings.ToLower(typ) {
		case "fqdn", "dns":
			id.Type, id.Data = IDFQDN, []byte(rest)
			return id, checkNonEmpty(id)
		case "email", "rfc822":
			id.Type, id.Data = IDRFC822, []byte(rest)
			return id, checkNonEmpty(id)
		case "keyid":
			b, err := hex.DecodeString(strings.TrimPrefix(rest, "#"))
			if err != nil {
				return id, fmt.Errorf("identity %q: key id is not hex", s)
			}
			id.Type, id.Data = IDKeyID, b
			return id, checkNonEmpty(id)
		case "ipv4", "ipv6":
			a, err := netip.ParseAddr(rest)
			if err != nil || (typ == "ipv4") != a.Is4() {
				return id, fmt.Errorf("identity %q: not an %s address", s, typ)
			}
			return addrIdentity(id, a), nil
		case "asn1dn":
			return dnIdentity(id, rest)
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return addrIdentity(id, a), nil
	}
	switch {
	case strings.HasPrefix(s, "@#"):
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return id, fmt.Errorf("identity %q: key id is not hex", s)
		}
		id.Type, id.Data = IDKeyID, b
	case strings.HasPrefix(s, "@"):
		id.Type, id.Data = IDFQDN, []byte(s[1:])
	case strings.Contains(s, "="):
		return dnIdentity(id, s)
	case strings.Contains(s, "@"):
		id.Type, id.Data = IDRFC822, []byte(s)
	default:
		id.Type, id.Data = IDFQDN, []byte(s)
	}
	return id, checkNonEmpty(id)
}

func checkNonEmpty(id Identity) error {
	if len(id.Data) == 0 {
		return fmt.Errorf("identity %q is empty", id.Text)
	}
	return nil
}

func addrIdentity(id Identity, a netip.Addr) Identity {
	if a.Is4() {
		id.Type = IDIPv4
	} else {
		id.Type = IDIPv6
	}
	id.Data = a.AsSlice()
	return id
}

// dnIdentity encodes "C=CH, O=Org, CN=gw" (in that order, as strongSwan
// does: the text's order is the DER order) with pki.ParseDN, the encoding
// the PKI uses for certificates' subjects, so that a configured DN and the
// subject of the certificate it names are the same bytes.
func dnIdentity(id Identity, s string) (Identity, error) {
	der, err := pki.ParseDN(s)
	if err != nil {
		return id, fmt.Errorf("identity %q: %w", s, err)
	}
	id.Type, id.Data = IDDN, der
	return id, nil
}

// Matches reports whether a peer's identity (type and data as received)
// satisfies this configured identity, by pki.MatchPattern's rules: %any
// matches all; FQDN and RFC 822 identities compare case-insensitively with
// '*' standing for any run of characters; a distinguished name compares
// attribute by attribute with '*' wildcards in values ("CN=*.site.example");
// the rest must be equal.
func (id Identity) Matches(typ uint8, data []byte) bool {
	return pki.MatchPattern(pki.ID{Type: id.Type, Data: id.Data}, pki.ID{Type: typ, Data: data})
}
