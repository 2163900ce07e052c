package vici_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	govici "github.com/strongswan/govici/vici"

	"github.com/spugate/spugate/control/vici"
)

// credIked is a configIked that also takes credentials over VICI; it
// parses certificates as iked does, to return its errors.
type credIked struct {
	*configIked
	loads   []string
	keys    []string
	auths   []string
	cleared bool
}

func (c *credIked) LoadCert(kind vici.CertKind, data []byte) error {
	if kind != vici.CertCRL {
		if _, err := x509.ParseCertificate(data); err != nil {
			return fmt.Errorf("malformed certificate: %v", err)
		}
	}
	c.loads = append(c.loads, fmt.Sprintf("%d:%d", kind, len(data)))
	return nil
}
func (c *credIked) LoadKey(typ string, data []byte) (string, error) {
	if string(data) == "junk" {
		return "", errors.New("malformed private key")
	}
	id := fmt.Sprintf("%s-%d", typ, len(c.keys)+1)
	c.keys = append(c.keys, id)
	return id, nil
}
func (c *credIked) UnloadKey(id string) error {
	for i, k := range c.keys {
		if k == id {
			c.keys = append(c.keys[:i], c.keys[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("private key '%s' not found", id)
}
func (c *credIked) KeyIDs() []string { return c.keys }
func (c *credIked) LoadAuthority(name string, cacert []byte) error {
	if _, err := x509.ParseCertificate(cacert); err != nil {
		return fmt.Errorf("cacert: malformed certificate: %v", err)
	}
	c.auths = append(c.auths, name)
	return nil
}
func (c *credIked) UnloadAuthority(name string) error {
	for i, a := range c.auths {
		if a == name {
			c.auths = append(c.auths[:i], c.auths[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("authority '%s' not found", name)
}
func (c *credIked) Authorities() []vici.Authority {
	var out []vici.Authority
	for _, a := range c.auths {
		out = append(out, vici.Authority{Name: a, CACert: "CN=" + a})
	}
	return out
}
func (c *credIked) ClearCreds() error {
	c.cleared, c.keys, c.auths, c.loads = true, nil, nil, nil
	return nil
}

// TestGoviciCreds: load-cert in current swanctl's (type X509, flag
// NONE/CA; X509_CRL) and older spellings, refusing AA/OCSP and malformed
// DER; load-key answers the key id that get-keys lists and unload-key
// takes; load-authority takes a cacert and refuses what iked would have
// to fetch; flush-certs and clear-creds.
func TestGoviciCreds(t *testing.T) {
	b := &credIked{configIked: &configIked{fakeIked: newFake(0), conns: map[string]string{}, secrets: map[string]string{}}}
	_, path := serve(t, b)
	s := session(t, path)
	der := testCerts(t)[1].DER

	for _, tf := range [][2]string{{"X509", "NONE"}, {"X509", "CA"}, {"X509", ""}, {"x509ca", ""}, {"X509_CRL", ""}} {
		if r := call(t, s, "load-cert", map[string]any{"type": tf[0], "flag": tf[1], "data": string(der)}); r.Get("success") != "yes" {
			t.Errorf("load-cert %v: %s", tf, r)
		}
	}
	if want := fmt.Sprintf("[0:%[1]d 1:%[1]d 0:%[1]d 1:%[1]d 2:%[1]d]", len(der)); fmt.Sprint(b.loads) != want {
		t.Errorf("loads %v, want %s", b.loads, want)
	}
	for in, want := range map[[3]string]string{
		{"X509", "NONE", "\x30\x03\x02\x01"}: "load-cert: malformed certificate: ",
		{"X509", "AA", "x"}:                  "load-cert: not supported by iked: AA certificates",
		{"X509", "OCSP", "x"}:                "load-cert: not supported by iked: OCSP certificates",
		{"X509_AC", "", "x"}:                 "load-cert: not supported by iked: X509_AC",
		{"X509", "BOGUS", "x"}:               `unknown X509 flag "BOGUS"`,
		{"PEM", "", "x"}:                     `unknown certificate type "PEM"`,
		{"", "", "x"}:                        "missing certificate type",
		{"X509", "CA", ""}:                   "missing certificate data",
	} {
		if e := fail(t, s, "load-cert", map[string]any{"type": in[0], "flag": in[1], "data": in[2]}); !strings.Contains(e, want) {
			t.Errorf("load-cert %q: %q, want %q", in, e, want)
		}
	}

	r := call(t, s, "load-key", map[string]any{"type": "ECDSA", "data": "DER"})
	if r.Get("success") != "yes" || r.Get("id") != "ecdsa-1" {
		t.Errorf("load-key: %s", r)
	}
	call(t, s, "load-key", map[string]any{"type": "any", "data": "DER"})
	for in, want := range map[[2]string]string{
		{"rsa", "junk"}: "load-key: malformed private key",
		{"ed448", "x"}:  "load-key: not supported by iked: ed448 keys",
		{"dsa", "x"}:    `unknown key type "dsa"`,
		{"", "x"}:       "missing key type",
		{"ed25519", ""}: "missing private key data",
	} {
		if e := fail(t, s, "load-key", map[string]any{"type": in[0], "data": in[1]}); !strings.Contains(e, want) {
			t.Errorf("load-key %q: %q, want %q", in, e, want)
		}
	}
	if l, _ := call(t, s, "get-keys", nil).Get("keys").([]string); fmt.Sprint(l) != "[ecdsa-1 any-2]" {
		t.Errorf("get-keys: %v", l)
	}
	if r := call(t, s, "unload-key", map[string]any{"id": "ecdsa-1"}); r.Get("success") != "yes" {
		t.Errorf("unload-key: %s", r)
	}
	if e := fail(t, s, "unload-key", map[string]any{"id": "ecdsa-1"}); !strings.Contains(e, "unload-key: private key 'ecdsa-1' not found") {
		t.Errorf("unload-key again: %s", e)
	}

	auth := func(name string, kv map[string]any) *govici.Message {
		a := govici.NewMessage()
		for k, v := range kv {
			a.Set(k, v)
		}
		m := govici.NewMessage()
		m.Set(name, a)
		return m
	}
	if _, err := s.Call(t.Context(), "load-authority", auth("lab", map[string]any{"cacert": string(der)})); err != nil {
		t.Errorf("load-authority: %v", err)
	}
	for _, c := range []struct {
		kv   map[string]any
		want string
	}{
		{map[string]any{"cacert": string(der), "crl_uris": []string{"http://x/crl"}}, "load-authority: bad: crl_uris: not supported by iked"},
		{map[string]any{"cacert": string(der), "handle": "0x01"}, "load-authority: bad: handle: not supported by iked: no smartcards"},
		{map[string]any{"cacert": "junk"}, "load-authority: bad: cacert: malformed certificate"},
		{map[string]any{"crl_url": "x"}, "load-authority: bad: unknown key crl_url"},
		{map[string]any{}, "load-authority: bad: missing cacert"},
	} {
		if _, err := s.Call(t.Context(), "load-authority", auth("bad", c.kv)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("load-authority %v: %v, want %q", c.kv, err, c.want)
		}
	}
	if l, _ := call(t, s, "get-authorities", nil).Get("authorities").([]string); fmt.Sprint(l) != "[lab]" {
		t.Errorf("get-authorities: %v", l)
	}
	if err := s.Subscribe(vici.EvListAuthority); err != nil {
		t.Fatal(err)
	}
	evs := make(chan govici.Event, 4)
	s.NotifyEvents(evs)
	call(t, s, "list-authorities", nil)
	call(t, s, "list-authorities", map[string]any{"name": "other"})
	if len(evs) != 1 {
		t.Errorf("list-authorities: %d events, want 1 (the filter by name)", len(evs))
	} else if ev := <-evs; fmt.Sprint(ev.Message.Get("lab")) == "" {
		t.Errorf("list-authority: %s", ev.Message)
	} else if a, _ := ev.Message.Get("lab").(*govici.Message); a == nil || a.Get("cacert") != "CN=lab" {
		t.Errorf("list-authority: %s", ev.Message)
	}
	s.StopEvents(evs)
	if r := call(t, s, "unload-authority", map[string]any{"name": "lab"}); r.Get("success") != "yes" {
		t.Errorf("unload-authority: %s", r)
	}
	if e := fail(t, s, "unload-authority", map[string]any{"name": "lab"}); !strings.Contains(e, "authority 'lab' not found") {
		t.Errorf("unload-authority again: %s", e)
	}
	if r := call(t, s, "flush-certs", map[string]any{"type": "x509"}); r.Get("success") != "yes" {
		t.Errorf("flush-certs: %s", r)
	}
	if e := fail(t, s, "flush-certs", map[string]any{"type": "bogus"}); !strings.Contains(e, `unknown certificate type "bogus"`) {
		t.Errorf("flush-certs bogus: %s", e)
	}
	if r := call(t, s, "clear-creds", nil); r.Get("success") != "yes" || !b.cleared {
		t.Errorf("clear-creds: %s", r)
	}
	if l, _ := call(t, s, "get-keys", nil).Get("keys").([]string); len(l) != 0 {
		t.Errorf("get-keys after clear-creds: %v", l)
	}
}

// TestGoviciCredsRefused: a daemon that takes no credentials over VICI
// refuses the credential commands, naming the command.
func TestGoviciCredsRefused(t *testing.T) {
	_, path := serve(t, newFake(0))
	s := session(t, path)
	for _, cmd := range vici.CredCommands {
		if e := fail(t, s, cmd, map[string]any{"x": "y"}); !strings.Contains(e, cmd+": not supported by this daemon") {
			t.Errorf("%s: %s", cmd, e)
		}
	}
}
