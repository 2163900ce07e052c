package suite

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestKeysJSON: IKEKeys and ChildKeys keep the JSON form of the fields
// they had before their keys went into one buffer (states of earlier
// versions are JSON), and read it back the same; keys of more bytes
// than the offsets hold are refused, not cut.
func TestKeysJSON(t *testing.T) {
	k := testKeys(t, ikeSuites[0])
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		Alg                                     Algorithms
		SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
	}
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old.SKd, k.SKd()) || !bytes.Equal(old.SKpr, k.SKpr()) || old.SKai != nil || old.Alg != k.Alg {
		t.Fatalf("JSON %s: not the fields of before", b)
	}
	var r IKEKeys
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for i := skD; i <= skPR; i++ {
		if !bytes.Equal(r.key(i), k.key(i)) {
			t.Errorf("key %d: %x, want %x", i, r.key(i), k.key(i))
		}
	}
	ck, err := k.ChildKeys(Algorithms{Protocol: ProtocolESP, Encr: EncrAESCBC, EncrKeyBits: 128, Integ: IntegHMACSHA256128}, nil, []byte("ni"), []byte("nr"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(ck); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"EncrI":`, `"IntegI":`, `"EncrR":`, `"IntegR":`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("Child SA keys' JSON %s: no %s", b, f)
		}
	}
	var rc ChildKeys
	if err := json.Unmarshal(b, &rc); err != nil {
		t.Fatal(err)
	}
	if e, i := rc.Inbound(false); !bytes.Equal(e, ck.EncrI()) || !bytes.Equal(i, ck.IntegI()) || len(i) != 32 {
		t.Errorf("Child SA keys after JSON: %x %x", e, i)
	}
	if _, err := NewIKEKeys(k.Alg, make([]byte, 1<<16), nil, nil, nil, nil, nil, nil); err == nil {
		t.Error("IKE keys of 64 KiB accepted")
	}
	if err := json.Unmarshal([]byte(`{"EncrI":"`+strings.Repeat("A", 90000)+`"}`), &rc); err == nil {
		t.Error("Child SA keys of 64 KiB accepted from JSON")
	}
}
