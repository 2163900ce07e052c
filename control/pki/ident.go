package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"net/netip"
	"strings"
)

// IKE identification types (RFC 7296 3.5), the same numbers as
// control/config's.
const (
	IDAny    = 0 // configured "%any": matches every peer; never on the wire
	IDIPv4   = 1
	IDFQDN   = 2
	IDRFC822 = 3
	IDIPv6   = 5
	IDDN     = 9
	IDKeyID  = 11
)

// ID is an IKE identity as carried in an ID payload (or as configured):
// the ID type and the identification data.
type ID struct {
	Type uint8
	Data []byte
}

// String writes the identity in strongSwan's notation, for logs: %any, an
// address, an FQDN or e-mail address (bytes outside printable ASCII as
// \xNN, so a peer cannot forge log lines), a DN as text, @#hex for a key
// ID, and idN:#hex for any other type.
func (id ID) String() string {
	switch id.Type {
	case IDAny:
		return "%any"
	case IDIPv4, IDIPv6:
		if a, ok := netip.AddrFromSlice(id.Data); ok && (id.Type == IDIPv4) == (len(id.Data) == 4) {
			return a.String()
		}
	case IDFQDN, IDRFC822:
		return printable(id.Data)
	case IDDN:
		return FormatDN(id.Data)
	case IDKeyID:
		return "@#" + hex.EncodeToString(id.Data)
	}
	return "id" + itoa(int(id.Type)) + ":#" + hex.EncodeToString(id.Data)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// printable returns s with control and non-ASCII bytes escaped, so that a
// peer's identity cannot forge log lines.
func printable(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			s.WriteString("\\x" + hex.EncodeToString([]byte{c}))
			continue
		}
		s.WriteByte(c)
	}
	return s.String()
}

// MatchCert checks that a peer's IKE identity is vouched for by its
// certificate, following RFC 4945 3.1 (and strongSwan's has_subject):
//
//   - ID_IPV4_ADDR, ID_IPV6_ADDR: an iPAddress subjectAltName equal to it;
//   - ID_FQDN: a dNSName subjectAltName, case-insensitive. Never the
//     subject's CN: RFC 4945 3.1.2 forbids it and strongSwan does not do it
//     either, so a certificate for an FQDN identity needs the SAN;
//   - ID_RFC822_ADDR: an rfc822Name subjectAltName, case-insensitive (not the
//     emailAddress attribute of the subject DN);
//   - ID_DER_ASN1_DN: the subject DN, bit for bit or, as strongSwan compares
//     them, attribute by attribute in the same order with string values
//     equal after case and space folding;
//   - ID_KEY_ID: as strongSwan, the subjectKeyIdentifier or the SHA-1 of the
//     subjectPublicKeyInfo or of the subjectPublicKey (RFC 4945 leaves
//     KEY_ID to local policy).
//
// Any other type fails. The error has ReasonIDMismatch.
func MatchCert(cert *x509.Certificate, id ID) error {
	ok := false
	switch id.Type {
	case IDIPv4, IDIPv6:
		want, valid := netip.AddrFromSlice(id.Data)
		if !valid || (id.Type == IDIPv4) != (len(id.Data) == 4) {
			return fail(ReasonIDMismatch, "identity of type %d has %d bytes of address", id.Type, len(id.Data))
		}
		for _, ip := range cert.IPAddresses {
			if a, v := netip.AddrFromSlice(ip); v && a.Unmap() == want.Unmap() {
				ok = true
				break
			}
		}
	case IDFQDN:
		want := strings.TrimSuffix(string(id.Data), ".")
		for _, n := range cert.DNSNames {
			if strings.EqualFold(strings.TrimSuffix(n, "."), want) && want != "" {
				ok = true
				break
			}
		}
	case IDRFC822:
		for _, n := range cert.EmailAddresses {
			if strings.EqualFold(n, string(id.Data)) && len(id.Data) != 0 {
				ok = true
				break
			}
		}
	case IDDN:
		ok = dnEqual(id.Data, cert.RawSubject)
	case IDKeyID:
		ok = len(id.Data) != 0 && hasKeyID(cert, id.Data)
	default:
		return fail(ReasonIDMismatch, "identity type %d cannot be bound to a certificate", id.Type)
	}
	if !ok {
		return fail(ReasonIDMismatch, "certificate %q does not contain identity %q", FormatDN(cert.RawSubject), id.String())
	}
	return nil
}

func hasKeyID(cert *x509.Certificate, keyid []byte) bool {
	if len(cert.SubjectKeyId) != 0 && string(cert.SubjectKeyId) == string(keyid) {
		return true
	}
	spki := sha1.Sum(cert.RawSubjectPublicKeyInfo)
	if string(spki[:]) == string(keyid) {
		return true
	}
	if pk, err := subjectPublicKeyBits(cert.RawSubjectPublicKeyInfo); err == nil {
		h := sha1.Sum(pk)
		return string(h[:]) == string(keyid)
	}
	return false
}

// MatchPattern reports whether a peer's identity satisfies a configured
// remote identity (control/config's Identity, as type and data): %any
// matches every identity; otherwise the types must be equal, and
//
//   - ID_FQDN and ID_RFC822_ADDR compare case-insensitively, with '*' in the
//     pattern standing for any run of characters ("*.site.example",
//     "*@site.example");
//   - ID_DER_ASN1_DN compares attribute by attribute in order (the same
//     number of RDNs and the same attribute types), with case-insensitive
//     values in which '*' stands for any run of characters: "CN=*" as in
//     strongSwan, and also "CN=*.site.example", which strongSwan does not
//     have;
//   - addresses and key ids must be equal.
func MatchPattern(pattern, peer ID) bool {
	if pattern.Type == IDAny {
		return true
	}
	if pattern.Type != peer.Type {
		return false
	}
	switch pattern.Type {
	case IDFQDN, IDRFC822:
		p, s := strings.ToLower(string(pattern.Data)), strings.ToLower(string(peer.Data))
		if strings.Contains(p, "*") {
			return glob(p, s)
		}
		return p == s
	case IDDN:
		return string(pattern.Data) == string(peer.Data) || dnMatch(pattern.Data, peer.Data, true)
	}
	return string(pattern.Data) == string(peer.Data)
}
