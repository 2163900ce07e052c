package main

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	o, which, err := parse([]string{"-quick", "-sizes", "64,imix", "throughput", "rekey"})
	if err != nil || !o.quick || o.sizes != "64,imix" || strings.Join(which, ",") != "throughput,rekey" {
		t.Errorf("parse: %+v %v %v", o, which, err)
	}
	if _, which, _ := parse(nil); len(which) != len(scenarios) {
		t.Errorf("no scenario named runs %v", which)
	}
	if _, _, err := parse([]string{"bogus"}); err == nil {
		t.Error("unknown scenario accepted")
	}
	for _, v := range []string{"-version", "--version"} {
		if o, _, err := parse([]string{v}); err != nil || !o.version {
			t.Errorf("parse %s: %+v %v", v, o, err)
		}
	}
}

// TestParseIKEScale checks the IKE scenario's flags for runs at scale, and
// that -quick keeps a hold short.
func TestParseIKEScale(t *testing.T) {
	o, _, err := parse([]string{"-ike-count-iked-initiator", "1000000", "-ike-hold", "10m", "-ike-timeout", "5h", "ike"})
	if err != nil || o.ikeCountIked != 1000000 || o.ikeHold != 10*time.Minute || o.ikeTimeout != 5*time.Hour {
		t.Errorf("parse: %+v %v", o, err)
	}
	o.quick = true
	o.applyQuick()
	if o.ikeHold != 2*time.Second || o.ikeCountIked != 20 {
		t.Errorf("quick: hold %v, count %d", o.ikeHold, o.ikeCountIked)
	}
}
