package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/spugate/spugate/internal/privileged"
)

// TestPrivilegedLoad proves that each committed program passes this
// kernel's verifier, or that the kernel refuses a helper it needs (probed
// on its own): a refused helper skips that program, with the reason, and
// a failure prints the end of the verifier log.
func TestPrivilegedLoad(t *testing.T) {
	privileged.Require(t)
	steer, err := LoadSteer()
	if err != nil {
		t.Fatal(err)
	}
	reuse, err := LoadReuseport()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec  *ebpf.CollectionSpec
		name  string
		needs []Feature
	}{
		{steer, "spugate_meta", []Feature{FeatureXDPAdjustMeta}},
		{steer, "spugate_shim", []Feature{FeatureXDPAdjustHead}},
		{steer, "spugate_none", nil},
		{reuse, "spugate_reuseport", []Feature{FeatureSKReuseport, FeatureSelectReuseport, FeatureReuseportSockArray, FeatureLoadBytesRelative}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			feats := Probe(tc.needs...)
			for _, f := range tc.needs {
				if err := feats.Err(f); err != nil {
					t.Skipf("%s needs %s, which this kernel refuses: %v", tc.name, f, err)
				}
			}
			spec := tc.spec.Copy()
			for n := range spec.Programs {
				if n != tc.name {
					delete(spec.Programs, n)
				}
			}
			if len(spec.Programs) != 1 {
				t.Fatalf("no program %s in the object", tc.name)
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				t.Fatalf("load %s: %s", tc.name, verifierError(err))
			}
			defer coll.Close()
			info, err := coll.Programs[tc.name].Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != tc.name {
				t.Errorf("program name %q, want %s", info.Name, tc.name)
			}
			if n, ok := info.VerifiedInstructions(); ok {
				t.Logf("%s: %d instructions verified", tc.name, n)
			}
		})
	}
}

// TestPrivilegedProbe checks that the probe answers every feature on this
// kernel, yes or no, never with a failure of its own.
func TestPrivilegedProbe(t *testing.T) {
	privileged.Require(t)
	all := make([]Feature, 0, NumFeatures)
	for f := range NumFeatures {
		all = append(all, f)
	}
	feats := Probe(all...)
	t.Logf("kernel %s: %s", KernelRelease(), feats)
	for _, f := range all {
		if err := feats.Err(f); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			t.Errorf("%s: the probe failed: %v", f, err)
		}
	}
	for _, f := range []Feature{FeatureXDP, FeatureXSKMap, FeatureRedirectMap} {
		if !feats.Has(f) {
			t.Errorf("%s missing: this machine kind has AF_XDP, so it should be there", f)
		}
	}
}

func verifierError(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return ve.Error() + "\n" + joinLog(ve.Log)
	}
	return err.Error()
}

func joinLog(lines []string) string {
	s := ""
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	for _, l := range lines {
		s += l + "\n"
	}
	return s
}
