package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
)

// listPages prints each page as it comes (text, or one JSON object a
// line that decodes back), and stops at an error with what came before
// it printed.
func TestListPages(t *testing.T) {
	pages := func(fail bool) func(func([]api.PolicyState, error) bool) {
		return func(yield func([]api.PolicyState, error) bool) {
			for p := 0; p < 3; p++ {
				page := []api.PolicyState{{Policy: api.Policy{ID: uint32(2*p + 1), Action: api.Bypass}}, {Policy: api.Policy{ID: uint32(2*p + 2), Action: api.Discard}}}
				if !yield(page, nil) {
					return
				}
			}
			if fail {
				yield(nil, errors.New("spud: policy.dump: connection lost"))
			}
		}
	}
	var out bytes.Buffer
	if err := listPages(&out, pages(false), true, printPolicy); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	n := 0
	for sc.Scan() {
		var p api.PolicyState
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil || p.ID != uint32(n+1) {
			t.Fatalf("line %d %q: %v", n, sc.Text(), err)
		}
		n++
	}
	if n != 6 {
		t.Errorf("%d lines of JSON, want 6", n)
	}
	out.Reset()
	err := listPages(&out, pages(true), false, printPolicy)
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("error: %v", err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 6 || !strings.HasPrefix(out.String(), "policy 1 bypass") {
		t.Errorf("printed before the error:\n%s", out.String())
	}
}
