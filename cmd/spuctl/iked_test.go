package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
)

// printSAsFmt is printSAs as it was written with fmt (its clock given,
// as appendIKESA's is): printSAs's output must stay the same, byte for
// byte.
func printSAsFmt(w io.Writer, sas []ikectl.IKESA, only string, now time.Time) {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Round(time.Second).String()
	}
	for _, s := range sas {
		if only != "" && s.Conn != only {
			continue
		}
		mi, mr := "", ""
		if s.Initiator {
			mi = "*"
		} else {
			mr = "*"
		}
		fmt.Fprintf(w, "%s: #%d, %s, IKEv2, %s_i%s %s_r%s\n", s.Conn, s.UniqueID, s.State, s.SPIi, mi, s.SPIr, mr)
		nat := func(b bool) string {
			if b {
				return " (behind NAT)"
			}
			return ""
		}
		auth := func(a string) string {
			if a == "" {
				return ""
			}
			return ", " + a
		}
		fmt.Fprintf(w, "  local  '%s' @ %s[%d]%s%s\n", s.LocalID, s.Local.Addr(), s.Local.Port(), nat(s.NATLocal), auth(s.AuthLocal))
		fmt.Fprintf(w, "  remote '%s' @ %s[%d]%s%s\n", s.RemoteID, s.Remote.Addr(), s.Remote.Port(), nat(s.NATRemote), auth(s.AuthRemote))
		if s.Proposal != "" {
			fmt.Fprintf(w, "  %s\n", strings.TrimPrefix(s.Proposal, "IKE:"))
		}
		fmt.Fprintf(w, "  established %s ago", ago(s.Established))
		if s.RekeyIn > 0 {
			fmt.Fprintf(w, ", rekeying in %s", s.RekeyIn)
		}
		fmt.Fprintf(w, ", worker %d, anchor spu %d (logical %d), message ids %d/%d\n", s.Worker, s.SPU, s.Logical, s.Counters.MsgIDOut, s.Counters.MsgIDIn)
		for _, c := range s.Children {
			mode := "TUNNEL"
			if c.Encap {
				mode = "TUNNEL-in-UDP"
			}
			fmt.Fprintf(w, "  %s: #%d, reqid %d, %s, %s, %s\n", c.Name, c.UniqueID, c.ReqID, c.State, mode, c.Proposal)
			fmt.Fprintf(w, "    installed %s ago", ago(c.Installed))
			if c.RekeyIn > 0 {
				fmt.Fprintf(w, ", rekeying in %s", c.RekeyIn)
			}
			if c.ExpireIn > 0 {
				fmt.Fprintf(w, ", expires in %s", c.ExpireIn)
			}
			fmt.Fprintf(w, ", spu %d\n", c.SPU)
			fmt.Fprintf(w, "    in  %08x, %8d bytes, %6d packets\n", c.SPIIn, c.BytesIn, c.PacketsIn)
			fmt.Fprintf(w, "    out %08x, %8d bytes, %6d packets\n", c.SPIOut, c.BytesOut, c.PktsOut)
			fmt.Fprintf(w, "    local  %s\n", strings.Join(c.LocalTS, " "))
			fmt.Fprintf(w, "    remote %s\n", strings.Join(c.RemoteTS, " "))
		}
	}
}

// randomIKESAs makes IKE SAs with every field set or not by chance:
// addresses of both families, with zones, or none; times in the past and
// the future; counters of every width; odd strings.
func randomIKESAs(rng *rand.Rand, n int, now time.Time) []ikectl.IKESA {
	strs := []string{"", "tun", "net", "ESTABLISHED", "INSTALLED", "gw-b.example", "C=CH, O=strongSwan, CN=moon", "100%", "a'b", "ünï\tcode\n",
		"IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519", "AES_GCM_16_128/NO_EXT_SEQ", "198.18.1.0/24", "::/0", "%any", "psk", "ecdsa-sha256"}
	str := func() string { return strs[rng.IntN(len(strs))] }
	ap := func() netip.AddrPort {
		switch rng.IntN(4) {
		case 0:
			return netip.AddrPort{}
		case 1:
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))}), uint16(rng.IntN(65536)))
		case 2:
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(rng.IntN(256))}), 4500)
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfe, 0x80, 15: 1}).WithZone("eth0"), 500)
	}
	tm := func() time.Time {
		if rng.IntN(4) == 0 {
			return time.Time{}
		}
		return now.Add(time.Duration(rng.Int64N(int64(400*24*time.Hour))) - 10*time.Hour)
	}
	dur := func() time.Duration {
		if rng.IntN(3) == 0 {
			return 0
		}
		return time.Duration(rng.Int64N(int64(48*time.Hour))) - time.Hour
	}
	num := func() uint64 { return rng.Uint64() >> rng.IntN(64) }
	tss := func() []string {
		l := make([]string, rng.IntN(3))
		for i := range l {
			l[i] = str()
		}
		return l
	}
	out := make([]ikectl.IKESA, n)
	for i := range out {
		s := ikectl.IKESA{Conn: str(), UniqueID: rng.Uint32(), State: str(), Initiator: rng.IntN(2) == 0,
			SPIi: fmt.Sprintf("%016x", rng.Uint64()), SPIr: fmt.Sprintf("%016x", rng.Uint64()), Local: ap(), Remote: ap(),
			LocalID: str(), RemoteID: str(), Proposal: str(), NATLocal: rng.IntN(2) == 0, NATRemote: rng.IntN(2) == 0,
			Established: tm(), RekeyIn: dur(), Worker: rng.IntN(8), SPU: rng.IntN(8) - 1, Logical: rng.IntN(1 << 12),
			Counters:  ikectl.IKECounter{MsgIDOut: uint32(num()), MsgIDIn: uint32(num())},
			AuthLocal: str(), AuthRemote: str(), Fragmentation: rng.IntN(2) == 0}
		for range rng.IntN(3) {
			s.Children = append(s.Children, ikectl.ChildSA{Name: str(), UniqueID: rng.Uint32(), State: str(), ReqID: uint32(num()),
				SPIIn: rng.Uint32(), SPIOut: uint32(num()), Suite: str(), Proposal: str(), Encap: rng.IntN(2) == 0,
				LocalTS: tss(), RemoteTS: tss(), Installed: tm(), RekeyIn: dur(), ExpireIn: dur(),
				BytesIn: num(), PacketsIn: num(), BytesOut: num(), PktsOut: num(), SPU: rng.IntN(8) - 1})
		}
		out[i] = s
	}
	return out
}

// printSAs writes what the fmt code wrote, for IKE SAs of every shape,
// all of them or one connection's.
func TestPrintIKESAsAsFmt(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 6))
	now := time.Now()
	sas := randomIKESAs(rng, 3000, now)
	for _, only := range []string{"", "tun"} {
		var got, want bytes.Buffer
		w := bufio.NewWriter(&got)
		for i := range sas {
			if only == "" || sas[i].Conn == only {
				w.Write(appendIKESA(w.AvailableBuffer(), &sas[i], now))
			}
		}
		w.Flush()
		printSAsFmt(&want, sas, only, now)
		if got.String() != want.String() {
			g, wl := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
			for i := range min(len(g), len(wl)) {
				if g[i] != wl[i] {
					t.Fatalf("only %q: line %d:\n got %q\nwant %q", only, i, g[i], wl[i])
				}
			}
			t.Fatalf("only %q: %d lines, want %d", only, len(g), len(wl))
		}
	}
}

// BenchmarkPrintIKESAs: spuctl list-sas's printing of a page of IKE SAs
// with a Child SA each, to io.Discard, with strconv (printSAs) and with fmt
// as before.
func BenchmarkPrintIKESAs(b *testing.B) {
	rng := rand.New(rand.NewPCG(16, 7))
	now := time.Now()
	page := randomIKESAs(rng, ikectl.MaxSAsPage, now)
	for i := range page {
		for len(page[i].Children) != 1 {
			page[i].Children = randomIKESAs(rng, 1, now)[0].Children
		}
	}
	for _, how := range []string{"strconv", "fmt"} {
		b.Run(how, func(b *testing.B) {
			w := bufio.NewWriterSize(io.Discard, 64<<10)
			for b.Loop() {
				if how == "fmt" {
					printSAsFmt(w, page, "", now)
				} else {
					printSAs(w, page, "")
				}
				w.Flush()
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(page))
			b.ReportMetric(per, "ns/ike_sa")
			b.ReportMetric(per*1e6/1e9, "s/1M")
		})
	}
}

// appendIKESAJSON writes json.Marshal's bytes for IKE SAs of every shape
// (randomIKESAs, with odd strings, nil and empty lists, times zero or
// not, in UTC, local and odd zones), and goes through Marshal for the
// times Marshal refuses.
func TestIKESAJSONAsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 10))
	now := time.Now()
	sas := randomIKESAs(rng, 5000, now)
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("odd", -(9*3600 + 30*60)), time.FixedZone("secs", 3600+7)}
	for i := range sas {
		s := &sas[i]
		s.Established = s.Established.In(zones[rng.IntN(len(zones))])
		s.SPIi = oddStrings[rng.IntN(len(oddStrings))]
		for j := range s.Children {
			c := &s.Children[j]
			c.Installed = c.Installed.In(zones[rng.IntN(len(zones))])
			switch rng.IntN(3) {
			case 0:
				c.LocalTS = nil
			case 1:
				c.Policies = []uint32{rng.Uint32(), 0}
			}
		}
		if i%100 == 0 {
			s.Established = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		want, werr := json.Marshal(s)
		got, err := appendIKESAJSON(nil, s)
		if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("IKE SA %d: %v, Marshal: %v", i, err, werr)
		}
		if string(got) != string(want) {
			t.Fatalf("IKE SA %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// BenchmarkIKESAJSON: an IKE SA of list-sas -json, appended and by the
// Encoder.
func BenchmarkIKESAJSON(b *testing.B) {
	rng := rand.New(rand.NewPCG(16, 11))
	page := randomIKESAs(rng, ikectl.MaxSAsPage, time.Now())
	for _, how := range []string{"append", "encoder"} {
		b.Run(how, func(b *testing.B) {
			w := bufio.NewWriterSize(io.Discard, 64<<10)
			enc := json.NewEncoder(w)
			for b.Loop() {
				if how == "append" {
					printSAsJSON(w, page, "")
				} else {
					for i := range page {
						enc.Encode(&page[i])
					}
				}
				w.Flush()
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(page))
			b.ReportMetric(per, "ns/ike_sa")
			b.ReportMetric(per*1e6/1e9, "s/1M")
		})
	}
}
