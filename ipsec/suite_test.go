package ipsec

import (
	"encoding/json"
	"testing"
)

func TestSuiteNames(t *testing.T) {
	for _, s := range Suites {
		got, err := ParseSuite(s.String())
		if err != nil || got != s {
			t.Errorf("%s: parsed as %v, %v", s, got, err)
		}
		b, err := json.Marshal(s)
		var back Suite
		if err != nil || json.Unmarshal(b, &back) != nil || back != s {
			t.Errorf("%s: JSON %s, back %v, %v", s, b, back, err)
		}
		if s.EncKeyLen() == 0 || (s.AEAD() != (s.IntegKeyLen() == 0)) {
			t.Errorf("%s: key lengths %d/%d, AEAD %v", s, s.EncKeyLen(), s.IntegKeyLen(), s.AEAD())
		}
	}
	for _, bad := range []string{"", "invalid", "aes128gcm", "AES128GCM16"} {
		if _, err := ParseSuite(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := json.Marshal(SuiteInvalid); err == nil {
		t.Error("the invalid suite marshalled")
	}
}
