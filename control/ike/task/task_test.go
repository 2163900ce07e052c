package task

import "testing"

// The names of statuses and kinds are in the manager's log lines.
func TestNames(t *testing.T) {
	for s, want := range map[Status]string{Done: "done", NeedMore: "need-more", Retry: "retry", Failed: "failed",
		Destroy: "destroy", Reject: "reject", Pending: "pending", -1: "Status(-1)", 7: "Status(7)"} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d) = %q, want %q", int(s), got, want)
		}
	}
	for k, want := range map[Kind]string{KindIKEInit: "IKE_INIT", KindIKEAuth: "IKE_AUTH", KindChildCreate: "CHILD_CREATE",
		KindChildDelete: "CHILD_DELETE", KindIKEDelete: "IKE_DELETE", KindDPD: "IKE_DPD", KindInfo: "INFORMATIONAL",
		KindChildRekey: "CHILD_REKEY", KindIKERekey: "IKE_REKEY", -1: "Kind(-1)", 9: "Kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d) = %q, want %q", int(k), got, want)
		}
	}
}
