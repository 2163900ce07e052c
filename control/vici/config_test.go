package vici_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	govici "github.com/strongswan/govici/vici"

	"github.com/spugate/spugate/control/vici"
)

// configIked is a fakeIked that takes connections and keys over VICI.
type configIked struct {
	*fakeIked
	conns   map[string]string // name -> the tree as received
	order   []string
	secrets map[string]string // id -> owners and key
}

func (c *configIked) LoadConn(name string, s *vici.Section) error {
	if s.Get("bad") != "" {
		return errors.New("bad key")
	}
	if c.conns[name] == "" {
		c.order = append(c.order, name)
	}
	c.conns[name] = s.String()
	return nil
}
func (c *configIked) UnloadConn(name string) error {
	if c.conns[name] == "" {
		return fmt.Errorf("connection '%s' not found", name)
	}
	delete(c.conns, name)
	c.order = slices.DeleteFunc(c.order, func(n string) bool { return n == name })
	return nil
}
func (c *configIked) VICIConns() []string { return c.order }
func (c *configIked) LoadShared(id string, owners []string, key []byte) error {
	c.secrets[id] = fmt.Sprintf("%v %s", owners, key)
	return nil
}
func (c *configIked) UnloadShared(id string) error {
	if c.secrets[id] == "" {
		return fmt.Errorf("shared key '%s' not found", id)
	}
	delete(c.secrets, id)
	return nil
}
func (c *configIked) SharedIDs() []string {
	var ids []string
	for id := range c.secrets {
		ids = append(ids, id)
	}
	return ids
}

// TestGoviciLoadConn: load-conn hands the connection's tree to the
// backend, get-conns lists what VICI loaded, unload-conn removes it;
// load-shared takes IKE secrets only.
func TestGoviciLoadConn(t *testing.T) {
	b := &configIked{fakeIked: newFake(0), conns: map[string]string{}, secrets: map[string]string{}}
	_, path := serve(t, b)
	s := session(t, path)
	if l, _ := call(t, s, "get-conns", nil).Get("conns").([]string); len(l) != 0 {
		t.Errorf("get-conns before: %v", l)
	}
	type child struct {
		LocalTS []string `vici:"local_ts"`
	}
	type auth struct {
		Auth string `vici:"auth"`
		ID   string `vici:"id"`
	}
	type conn struct {
		RemoteAddrs []string         `vici:"remote_addrs"`
		Local       auth             `vici:"local-1"`
		Children    map[string]child `vici:"children"`
	}
	in, err := govici.MarshalMessage(map[string]any{"site": conn{RemoteAddrs: []string{"198.18.0.2"}, Local: auth{"psk", "a"},
		Children: map[string]child{"net": {LocalTS: []string{"198.18.1.0/24"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Call(t.Context(), "load-conn", in); err != nil {
		t.Fatal(err)
	}
	if got := b.conns["site"]; !strings.Contains(got, "remote_addrs = [198.18.0.2]") || !strings.Contains(got, "local-1 {") ||
		!strings.Contains(got, "local_ts = [198.18.1.0/24]") {
		t.Errorf("backend got:\n%s", got)
	}
	if l, _ := call(t, s, "get-conns", nil).Get("conns").([]string); len(l) != 1 || l[0] != "site" {
		t.Errorf("get-conns: %v", l)
	}
	bad, _ := govici.MarshalMessage(map[string]any{"x": map[string]string{"bad": "yes"}})
	if e := fail(t, s, "load-conn", nil); !strings.Contains(e, "want one connection section") {
		t.Errorf("load-conn empty: %s", e)
	}
	m := govici.NewMessage()
	m.Set("x", bad.Get("x"))
	if _, err := s.Call(t.Context(), "load-conn", m); err == nil || !strings.Contains(err.Error(), "load-conn: x: bad key") {
		t.Errorf("load-conn bad: %v", err)
	}
	if r := call(t, s, "unload-conn", map[string]any{"name": "site"}); r.Get("success") != "yes" {
		t.Errorf("unload-conn: %s", r)
	}
	if e := fail(t, s, "unload-conn", map[string]any{"name": "site"}); !strings.Contains(e, "'site' not found") {
		t.Errorf("unload-conn again: %s", e)
	}

	if r := call(t, s, "load-shared", map[string]any{"id": "ike-1", "type": "IKE", "data": "s3cret", "owners": []string{"a", "b"}}); r.Get("success") != "yes" {
		t.Errorf("load-shared: %s", r)
	}
	if b.secrets["ike-1"] != "[a b] s3cret" {
		t.Errorf("secret: %q", b.secrets["ike-1"])
	}
	if l, _ := call(t, s, "get-shared", nil).Get("keys").([]string); len(l) != 1 || l[0] != "ike-1" {
		t.Errorf("get-shared: %v", l)
	}
	if e := fail(t, s, "load-shared", map[string]any{"id": "x", "type": "EAP", "data": "p"}); !strings.Contains(e, "not supported by iked: EAP") {
		t.Errorf("load-shared EAP: %s", e)
	}
	if r := call(t, s, "unload-shared", map[string]any{"id": "ike-1"}); r.Get("success") != "yes" {
		t.Errorf("unload-shared: %s", r)
	}
	for _, cmd := range []string{"get-keys", "get-authorities"} {
		r := call(t, s, cmd, nil)
		if len(r.Keys()) != 1 {
			t.Errorf("%s: %s", cmd, r)
		}
	}
}
