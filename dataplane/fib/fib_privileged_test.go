package fib

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

func TestPrivilegedFollowsTheKernel(t *testing.T) {
	ln := labtest.Line(t, lab.LineOptions{})
	p := ln.Plan
	var tb *Table
	err := ln.GwA.Do(func() error {
		var err error
		tb, err = Open()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()

	nh, ok := tb.Lookup(p.ClientB4)
	if !ok || nh.Gateway != p.GwBWan4 || tb.Ifname(nh.Ifindex) != "wan0" || nh.Src != p.GwAWan4 {
		t.Fatalf("route to client-b: %+v %v", nh, ok)
	}
	if nh.Resolved {
		t.Fatal("gw-b resolved before anything talked to it")
	}
	// Resolution through the kernel.
	nh, err = tb.WaitResolved(p.ClientB4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := ln.GwB.Exec("cat", "/sys/class/net/wan0/address")
	var want [6]byte
	copy(want[:], mustMAC(t, string(out)))
	if nh.DstMAC != want {
		t.Errorf("gw-b's MAC %x, kernel says %s", nh.DstMAC, out)
	}
	if nh6, err := tb.WaitResolved(p.ClientB6, 5*time.Second); err != nil || !nh6.Resolved {
		t.Errorf("IPv6: %+v %v", nh6, err)
	}
	if nh, ok := tb.Lookup(p.GwALan4); !ok || !nh.Local {
		t.Errorf("own address: %+v %v", nh, ok)
	}
	// A route added later is seen.
	gen := tb.Gen()
	extra := netip.MustParsePrefix("198.19.5.0/24")
	if err := ln.GwA.AddRoute(extra, p.GwBWan4); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if nh, ok := tb.Lookup(netip.MustParseAddr("198.19.5.1")); ok && nh.Gateway == p.GwBWan4 && tb.Gen() > gen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new route not seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustMAC(t *testing.T, s string) []byte {
	var b [6]byte
	n := 0
	for i := 0; i < len(s) && n < 6; {
		if s[i] == ':' || s[i] == '\n' {
			i++
			continue
		}
		var v byte
		for j := 0; j < 2; j++ {
			c := s[i+j]
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'a' && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			}
		}
		b[n] = v
		n++
		i += 2
	}
	if n != 6 {
		t.Fatalf("bad MAC %q", s)
	}
	return b[:]
}
