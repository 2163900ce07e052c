package message

import (
	"fmt"
	"testing"
)

// TestNames pins the text of the registry enums' String methods, the
// unknown-value fallbacks included: logs, error texts and the charon
// interop tests use them.
func TestNames(t *testing.T) {
	for _, c := range []struct {
		v    fmt.Stringer
		want string
	}{
		{PayloadNone, "NONE"}, {PayloadNotify, "N"}, {PayloadSKF, "SKF"}, {PayloadType(49), "type 49"},
		{IKESAInit, "IKE_SA_INIT"}, {IKEFollowupKE, "IKE_FOLLOWUP_KE"}, {ExchangeType(99), "EXCHANGE_99"},
		{NoProposalChosen, "NO_PROPOSAL_CHOSEN"}, {UseAssignedHoA, "USE_ASSIGNED_HoA"}, {UseAggfrag, "USE_AGGFRAG"},
		{NotifyType(0), "NOTIFY_0"}, {NotifyType(40000), "NOTIFY_40000"},
		{IDFQDN, "ID_FQDN"}, {IDNull, "ID_NULL"}, {IDType(4), "ID_4"},
		{AuthSharedKeyMIC, "SHARED_KEY_MIC"}, {AuthNull, "NULL_AUTH"}, {AuthMethod(0), "AUTH_0"},
		{CfgRequest, "CFG_REQUEST"}, {CfgReply, "CFG_REPLY"}, {CfgSet, "CFG_SET"}, {CfgAck, "CFG_ACK"},
		{CfgType(0), "CFG_0"}, {CfgType(5), "CFG_5"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%T(%d): String() = %q, want %q", c.v, c.v, got, c.want)
		}
	}
}
