package pki

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"*.site.example", "gw.site.example", true},
		{"*.site.example", "a.b.site.example", true},
		{"*.site.example", "site.example", false},
		{"gw*", "gw", true},
		{"g*w*x", "gqqwqqx", true},
		{"g*w*x", "gqqwqq", false},
		{"**a", "a", true},
		{"a*b*c", "abcbc", true},
		{"", "", true},
		{"", "a", false},
	}
	for _, c := range cases {
		if got := glob(c.p, c.s); got != c.want {
			t.Errorf("glob(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

// globRef is the obvious regexp version of glob.
func globRef(p, s string) bool {
	parts := strings.Split(p, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^(?s:" + strings.Join(parts, ".*") + ")$").MatchString(s)
}

func FuzzGlob(f *testing.F) {
	f.Add("*.site.example", "gw.site.example")
	f.Add("a*b*c", "abcbc")
	f.Add("**", "")
	f.Fuzz(func(t *testing.T, p, s string) {
		// The reference works on runes: compare on valid UTF-8 only, where
		// byte and rune matching agree (UTF-8 is self-synchronising).
		if len(p) > 64 || len(s) > 256 || !utf8.ValidString(p) || !utf8.ValidString(s) {
			return
		}
		if got, want := glob(p, s), globRef(p, s); got != want {
			t.Fatalf("glob(%q, %q) = %v, regexp says %v", p, s, got, want)
		}
	})
}

func TestParseFormatDN(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"C=CH, O=strongSwan, CN=moon.strongswan.org", "C=CH, O=strongSwan, CN=moon.strongswan.org"},
		{"/C=CH/O=Org/CN=gw", "C=CH, O=Org, CN=gw"},
		{`CN=a\, b, OU=x`, `CN=a\, b, OU=x`},
		{"E=ops@site.example, DC=example, CN=Zoë", "E=ops@site.example, DC=example, CN=Zoë"},
		{"2.5.4.3=gw", "CN=gw"},
	} {
		der, err := ParseDN(c.in)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got := FormatDN(der); got != c.out {
			t.Errorf("%q formats as %q, want %q", c.in, got, c.out)
		}
	}
	for _, bad := range []string{"", "CN", "XX=1", "CN=", "C=é"} {
		if _, err := ParseDN(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A control character in a value cannot forge a log line.
	der, _ := ParseDN("CN=a\nb")
	if got := FormatDN(der); strings.Contains(got, "\n") {
		t.Errorf("FormatDN kept a newline: %q", got)
	}
}

func TestDNMatch(t *testing.T) {
	dn := func(s string) []byte {
		b, err := ParseDN(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	subject := dn("C=CH, O=spugate lab, CN=gw.site.example")
	cases := []struct {
		p    string
		wild bool
		want bool
	}{
		{"C=CH, O=spugate lab, CN=gw.site.example", false, true},
		{"c=ch, o=SPUGATE   LAB, cn=GW.SITE.EXAMPLE", false, true},
		{"C=CH, O=spugate lab, CN=*.site.example", false, false},
		{"C=CH, O=spugate lab, CN=*.site.example", true, true},
		{"C=CH, O=*, CN=*", true, true},
		{"C=CH, O=spugate lab", true, false},
		{"O=spugate lab, C=CH, CN=gw.site.example", true, false},
		{"C=CH, OU=spugate lab, CN=gw.site.example", true, false},
	}
	for _, c := range cases {
		if got := dnMatch(dn(c.p), subject, c.wild); got != c.want {
			t.Errorf("dnMatch(%q, wild=%v) = %v", c.p, c.wild, got)
		}
	}
	if dnMatch([]byte{0x30, 0x80}, subject, true) || dnEqual(subject, []byte{1}) {
		t.Error("garbage matched")
	}
}
