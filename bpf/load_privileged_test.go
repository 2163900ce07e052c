package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/spugate/spugate/internal/privileged"
)

// TestPrivilegedLoad proves the committed objects pass this kernel's
// verifier, printing the verifier log on failure.
func TestPrivilegedLoad(t *testing.T) {
	privileged.Require(t)
	t.Run("steer", func(t *testing.T) {
		var objs SteerObjects
		if err := LoadSteerObjects(&objs, nil); err != nil {
			t.Fatalf("load steer: %s", verifierError(err))
		}
		defer objs.Close()
		info, err := objs.SpugateSteer.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != "spugate_steer" {
			t.Errorf("program name %q, want spugate_steer", info.Name)
		}
		if n, ok := info.VerifiedInstructions(); ok {
			t.Logf("steer: %d instructions verified", n)
		}
	})
	t.Run("reuseport", func(t *testing.T) {
		var objs ReuseportObjects
		if err := LoadReuseportObjects(&objs, nil); err != nil {
			t.Fatalf("load reuseport: %s", verifierError(err))
		}
		defer objs.Close()
	})
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
