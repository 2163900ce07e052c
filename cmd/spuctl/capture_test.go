package main

import (
	"bytes"
	"strings"
	"testing"
)

// spuctl capture's help works without spud, and bad flags are usage
// errors (exit 2) that name the flag, before spud is asked anything.
func TestCaptureUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-s", "/nonexistent.sock", "capture", "--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "pcapng") {
		t.Errorf("capture --help: exit %d: %s%s", code, out.String(), errOut.String())
	}
	for _, c := range []struct{ args, want string }{
		{"capture", "-w FILE is required"},
		{"capture -w f --spi nope", `--spi "nope"`},
		{"capture -w f --spi 5 --reqid 3", "one of --spi, --reqid and --tunnel"},
		{"capture -w f --point esp-in,bogus", `--point "bogus"`},
		{"capture -w f --snaplen 0", "--snaplen 0"},
		{"capture -w f --count -1", "negative"},
	} {
		out.Reset()
		errOut.Reset()
		code := run(append([]string{"-s", "/nonexistent.sock"}, strings.Fields(c.args)...), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("spuctl %s: exit %d, %q; want 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}
