package scenario

import "testing"

// TestIKERatiosSameInitiator checks that iked and charon are compared as
// responders only under the same initiator.
func TestIKERatiosSameInitiator(t *testing.T) {
	runs := []IKERun{
		{Initiator: "charon", Responder: "iked", Auth: "psk", Rate: 500},
		{Initiator: "charon", Responder: "charon", Auth: "psk", Rate: 1000},
		{Initiator: "iked", Responder: "iked", Auth: "psk", Rate: 300},
		{Initiator: "iked", Responder: "charon", Auth: "psk", Rate: 600},
		// No charon responder under iked for ecdsa: no ratio.
		{Initiator: "iked", Responder: "iked", Auth: "ecdsa", Rate: 200},
		{Initiator: "charon", Responder: "charon", Auth: "ecdsa", Rate: 400},
		{Initiator: "iked", Responder: "charon", Auth: "ecdsa", Rate: 100, Error: "failed"},
	}
	got := IKERatios(runs)
	want := []IKERatio{
		{Initiator: "charon", Auth: "psk", Iked: 500, Charon: 1000, Ratio: 0.5},
		{Initiator: "iked", Auth: "psk", Iked: 300, Charon: 600, Ratio: 0.5},
	}
	if len(got) != len(want) {
		t.Fatalf("ratios %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ratio %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	c := &IKE{}
	c.defaults()
	if c.count("iked") != 2000 || c.count(InitLoadTester) != 10000 || c.Initiators[0] != InitLoadTester || len(c.Responders) != 4 {
		t.Errorf("defaults: %+v", c)
	}
}
