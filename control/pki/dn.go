package pki

import (
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Distinguished names are handled here as DER RDNSequences, the form an
// ID_DER_ASN1_DN payload and a certificate's subject both carry, and in
// strongSwan's text form "C=CH, O=Org, CN=gw" (the text order is the DER
// order, not RFC 4514's reversed order).

type atv struct {
	oid asn1.ObjectIdentifier
	tag int
	raw []byte // value bytes as encoded
	str string // decoded text when the value is a string type
	txt bool
}

type rdn []atv

var (
	oidCN     = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidEmail  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	dnAttrOID = map[string]asn1.ObjectIdentifier{
		"CN":           oidCN,
		"C":            oidC,
		"L":            {2, 5, 4, 7},
		"ST":           {2, 5, 4, 8},
		"O":            {2, 5, 4, 10},
		"OU":           {2, 5, 4, 11},
		"SN":           {2, 5, 4, 4},
		"SERIALNUMBER": {2, 5, 4, 5},
		"T":            {2, 5, 4, 12},
		"TITLE":        {2, 5, 4, 12},
		"G":            {2, 5, 4, 42},
		"GN":           {2, 5, 4, 42},
		"E":            oidEmail,
		"EMAIL":        oidEmail,
		"EMAILADDRESS": oidEmail,
		"DC":           oidDC,
		"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	}
	dnAttrName = map[string]string{}
)

func init() {
	// Preferred short names for printing.
	for _, n := range []string{"CN", "C", "L", "ST", "O", "OU", "SN", "SERIALNUMBER", "T", "G", "E", "DC", "UID"} {
		dnAttrName[dnAttrOID[n].String()] = n
	}
}

// parseDN parses a DER RDNSequence.
func parseDN(der []byte) ([]rdn, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, fmt.Errorf("not a DER RDNSequence")
	}
	var out []rdn
	in := seq.Bytes
	for len(in) > 0 {
		var set asn1.RawValue
		if in, err = asn1.Unmarshal(in, &set); err != nil {
			return nil, err
		}
		if set.Class != asn1.ClassUniversal || set.Tag != asn1.TagSet || !set.IsCompound || len(set.Bytes) == 0 {
			return nil, fmt.Errorf("RDN is not a non-empty SET")
		}
		var r rdn
		for s := set.Bytes; len(s) > 0; {
			var a struct {
				Type  asn1.ObjectIdentifier
				Value asn1.RawValue
			}
			if s, err = asn1.Unmarshal(s, &a); err != nil {
				return nil, err
			}
			v := atv{oid: a.Type, tag: a.Value.Tag, raw: a.Value.Bytes}
			if a.Value.Class == asn1.ClassUniversal {
				v.str, v.txt = decodeString(a.Value.Tag, a.Value.Bytes)
			}
			r = append(r, v)
		}
		out = append(out, r)
	}
	return out, nil
}

// decodeString decodes the ASN.1 string types a DN may use.
func decodeString(tag int, b []byte) (string, bool) {
	switch tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, 26 /* VisibleString */ :
		if !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	case asn1.TagT61String:
		// Treated as Latin-1, as most implementations do.
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), true
	case asn1.TagBMPString:
		if len(b)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		return string(utf16.Decode(u)), true
	case 28: // UniversalString
		if len(b)%4 != 0 {
			return "", false
		}
		r := make([]rune, len(b)/4)
		for i := range r {
			r[i] = rune(uint32(b[4*i])<<24 | uint32(b[4*i+1])<<16 | uint32(b[4*i+2])<<8 | uint32(b[4*i+3]))
		}
		return string(r), true
	}
	return "", false
}

// foldValue normalises a value for comparison in the spirit of RFC 5280
// 7.1: case folded, leading and trailing space removed, inner runs of space
// collapsed.
func foldValue(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// dnEqual reports whether two DER DNs name the same entity: bit for bit, or
// attribute by attribute in the same order with values equal after folding
// (so PrintableString "gw" equals UTF8String "GW").
func dnEqual(a, b []byte) bool {
	if string(a) == string(b) {
		return true
	}
	return dnMatch(a, b, false)
}

// dnMatch compares a pattern DN with a DN; with wild, '*' in a pattern
// value matches any run of characters.
func dnMatch(pattern, dn []byte, wild bool) bool {
	p, err := parseDN(pattern)
	if err != nil {
		return false
	}
	d, err := parseDN(dn)
	if err != nil || len(p) != len(d) {
		return false
	}
	for i := range p {
		if len(p[i]) != len(d[i]) {
			return false
		}
		for j := range p[i] {
			pa, da := p[i][j], d[i][j]
			if !pa.oid.Equal(da.oid) {
				return false
			}
			switch {
			case pa.txt && da.txt:
				pv, dv := foldValue(pa.str), foldValue(da.str)
				if wild && strings.Contains(pv, "*") {
					if !glob(pv, dv) {
						return false
					}
				} else if pv != dv {
					return false
				}
			case pa.tag != da.tag || string(pa.raw) != string(da.raw):
				return false
			}
		}
	}
	return true
}

// glob matches s against a pattern in which '*' stands for any run of
// characters (including none and including dots), as strongSwan's and
// control/config's identity wildcards do. Both are already case folded.
func glob(pattern, s string) bool {
	// Iterative matching with backtracking to the last star: linear in
	// practice, and no recursion a hostile identity could deepen.
	p, q := 0, 0
	star, mark := -1, 0
	for q < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, q
			p++
		case p < len(pattern) && pattern[p] == s[q]:
			p++
			q++
		case star >= 0:
			p = star + 1
			mark++
			q = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// FormatDN renders a DER DN in strongSwan's order and notation,
// "C=CH, O=Org, CN=gw"; for logs and error messages.
func FormatDN(der []byte) string {
	d, err := parseDN(der)
	if err != nil {
		return "#" + hex.EncodeToString(der)
	}
	var b strings.Builder
	for i, r := range d {
		for j, a := range r {
			switch {
			case i == 0 && j == 0:
			case j > 0:
				b.WriteString(" + ")
			default:
				b.WriteString(", ")
			}
			name, ok := dnAttrName[a.oid.String()]
			if !ok {
				name = a.oid.String()
			}
			b.WriteString(name)
			b.WriteByte('=')
			if a.txt {
				for _, c := range a.str {
					if c == ',' || c == '+' || c == '\\' || c == '/' {
						b.WriteByte('\\')
					}
					if c < 0x20 || c == 0x7f {
						fmt.Fprintf(&b, "\\x%02x", c)
						continue
					}
					b.WriteRune(c)
				}
			} else {
				b.WriteString("#" + hex.EncodeToString(a.raw))
			}
		}
	}
	return b.String()
}

// ParseDN encodes a distinguished name written as strongSwan does, "C=CH,
// O=Org, CN=gw" (or OpenSSL's "/C=CH/O=Org/CN=gw"), as a DER RDNSequence in
// the written order. Values are PrintableStrings where they can be (C
// always), IA5Strings for E and DC, and UTF8Strings otherwise. '\' escapes
// a separator inside a value.
func ParseDN(s string) ([]byte, error) {
	parts := splitDN(s)
	if len(parts) == 0 {
		return nil, fmt.Errorf("pki: distinguished name %q is empty", s)
	}
	var seq []byte
	for _, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		oid, known := dnAttrOID[strings.ToUpper(k)]
		if !known {
			if o, err := parseOID(k); err == nil {
				oid, known = o, true
			}
		}
		if !ok || !known || v == "" {
			return nil, fmt.Errorf("pki: distinguished name %q: %q is not attribute=value", s, part)
		}
		tag := asn1.TagUTF8String
		switch {
		case oid.Equal(oidC):
			if !isPrintable(v) {
				return nil, fmt.Errorf("pki: distinguished name %q: country %q is not printable", s, v)
			}
			tag = asn1.TagPrintableString
		case oid.Equal(oidEmail) || oid.Equal(oidDC):
			tag = asn1.TagIA5String
		case isPrintable(v):
			tag = asn1.TagPrintableString
		}
		a, err := asn1.Marshal(struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{oid, asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(v)}})
		if err != nil {
			return nil, fmt.Errorf("pki: distinguished name %q: %v", s, err)
		}
		set, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: a})
		seq = append(seq, set...)
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: seq})
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, f := range strings.Split(s, ".") {
		n := 0
		if f == "" || len(f) > 9 {
			return nil, fmt.Errorf("bad OID")
		}
		for _, c := range f {
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("bad OID")
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("bad OID")
	}
	return oid, nil
}

// isPrintable reports whether s fits an ASN.1 PrintableString. '*' is let
// through as Go's encoder does, so that wildcard patterns stay printable.
func isPrintable(s string) bool {
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.ContainsRune(" '()+,-./:=?*", c):
		default:
			return false
		}
	}
	return true
}

// splitDN splits on commas (or on slashes, OpenSSL's form) not escaped by '\'.
func splitDN(s string) []string {
	s = strings.TrimSpace(s)
	sep := ','
	if strings.HasPrefix(s, "/") {
		s, sep = s[1:], '/'
	}
	var parts []string
	var cur strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc = true
		case r == sep:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		parts = append(parts, cur.String())
	}
	return parts
}
