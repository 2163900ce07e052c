package strongswan

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func parseKeyLog(t *testing.T, name string) ([]IKEKeys, []ChildKeys) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	ikes, children, err := ParseKeys(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(ikes) != 1 || len(children) != 1 {
		t.Fatalf("%s: %d IKE key sets, %d child key sets; want 1 each", name, len(ikes), len(children))
	}
	return ikes, children
}

// TestParseKeys reads the logs both ends of one tunnel wrote (gw-a
// initiated) and checks each end's outbound keys are the other's inbound.
func TestParseKeys(t *testing.T) {
	for _, tc := range []struct {
		suite             string
		encrLen, integLen int
		encr, integ       string
	}{
		{"gcm", 20, 0, "AES_GCM_16", ""},
		{"cbc", 32, 32, "AES_CBC", "HMAC_SHA2_256_128"},
	} {
		t.Run(tc.suite, func(t *testing.T) {
			ia, ca := parseKeyLog(t, "keys-a-"+tc.suite+".log")
			ib, cb := parseKeyLog(t, "keys-b-"+tc.suite+".log")
			a, b := ca[0], cb[0]
			if !a.Initiator || b.Initiator {
				t.Errorf("initiator: a %v b %v", a.Initiator, b.Initiator)
			}
			if a.Name != "net" || a.IKEName != "site" || a.UniqueID != 1 || a.IKEUniqueID != 1 {
				t.Errorf("a: %+v", a)
			}
			if a.SPIIn != b.SPIOut || a.SPIOut != b.SPIIn || a.SPIIn == 0 {
				t.Errorf("SPIs a %08x/%08x b %08x/%08x", a.SPIIn, a.SPIOut, b.SPIIn, b.SPIOut)
			}
			if a.InSrc != b.InDst || a.InDst != b.InSrc || a.InSrc.String() != "198.18.0.2" {
				t.Errorf("addresses a %v->%v b %v->%v", a.InSrc, a.InDst, b.InSrc, b.InDst)
			}
			if a.EncrAlg != tc.encr || a.IntegAlg != tc.integ {
				t.Errorf("algorithms %s/%s", a.EncrAlg, a.IntegAlg)
			}
			if len(a.EncrIn) != tc.encrLen || len(a.EncrOut) != tc.encrLen || len(a.IntegIn) != tc.integLen || len(a.IntegOut) != tc.integLen {
				t.Errorf("key lengths %d/%d %d/%d", len(a.EncrIn), len(a.EncrOut), len(a.IntegIn), len(a.IntegOut))
			}
			if !bytes.Equal(a.EncrOut, b.EncrIn) || !bytes.Equal(a.EncrIn, b.EncrOut) || !bytes.Equal(a.IntegOut, b.IntegIn) || !bytes.Equal(a.IntegIn, b.IntegOut) {
				t.Error("a's outbound keys are not b's inbound keys")
			}
			if bytes.Equal(a.EncrIn, a.EncrOut) {
				t.Error("same key both ways")
			}
			ka, kb := ia[0], ib[0]
			for _, p := range [][2][]byte{{ka.SKd, kb.SKd}, {ka.SKei, kb.SKei}, {ka.SKer, kb.SKer}, {ka.SKpi, kb.SKpi}, {ka.SKpr, kb.SKpr}, {ka.SKai, kb.SKai}} {
				if !bytes.Equal(p[0], p[1]) {
					t.Errorf("IKE keys differ: %x vs %x", p[0], p[1])
				}
			}
			if len(ka.SKd) != 32 || len(ka.SKpi) != 32 || len(ka.SKei) != tc.encrLen {
				t.Errorf("IKE key lengths SK_d %d SK_pi %d SK_ei %d", len(ka.SKd), len(ka.SKpi), len(ka.SKei))
			}
			if (len(ka.SKai) != 0) != (tc.integ != "") {
				t.Errorf("SK_ai %x with integrity %q", ka.SKai, tc.integ)
			}
			sas, err := a.TsharkESPSAs()
			if err != nil {
				t.Fatal(err)
			}
			if len(sas) != 2 || !strings.HasPrefix(sas[0], `"IPv4","198.18.0.2","198.18.0.1","0x`) {
				t.Errorf("tshark entries %q", sas)
			}
		})
	}
}

func TestParseKeysMalformed(t *testing.T) {
	for _, log := range []string{
		"2026-11-27 05:39:36.071 11[IKE] <site|1> Sk_d secret => 32 bytes @ 0x7f\n2026-11-27 05:39:36.071 11[IKE] <site|1> something else\n",
		"2026-11-27 05:39:36.071 11[IKE] <site|1> Sk_d secret => 4 bytes @ 0x7f\n2026-11-27 05:39:36.071 11[IKE] <site|1>    0: 01 02  ..\n",
		"2026-11-27 05:39:36.071 11[IKE] <site|1> Sk_d secret => 2 bytes @ 0x7f\n2026-11-27 05:39:36.071 11[IKE] <site|1>    0: 01 XY  ..\n",
	} {
		if _, _, err := ParseKeys(log); err == nil {
			t.Errorf("no error for %q", log)
		}
	}
}

func FuzzParseKeys(f *testing.F) {
	for _, n := range []string{"keys-a-gcm.log", "keys-b-cbc.log"} {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b[:min(len(b), 4096)]))
	}
	f.Add("2026-11-27 05:39:36.071 11[IKE] <site|1> Sk_d secret => 2 bytes @ 0x7f\n2026-11-27 05:39:36.071 11[IKE] <site|1>    0: 01 02  ..\n")
	f.Fuzz(func(t *testing.T, log string) {
		ikes, children, err := ParseKeys(log)
		if err != nil {
			return
		}
		for _, c := range children {
			if c.SPIIn == 0 {
				t.Errorf("child without SPI: %+v", c)
			}
			c.TsharkESPSAs()
		}
		_ = ikes
	})
}
