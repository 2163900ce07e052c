package main

import (
	"strings"
	"testing"
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
}
