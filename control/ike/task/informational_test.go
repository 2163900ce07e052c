package task

import (
	"testing"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
)

// info runs InfoR on a request with payloads ps.
func (h *harness) info(t *testing.T, ps ...message.Payload) (process, build Status, resp *message.Message, c *Ctx) {
	t.Helper()
	task := &InfoR{}
	c = h.ctx(message.Informational)
	process = task.Process(c, &message.Message{Inner: ps})
	resp = &message.Message{}
	build = task.Build(c, resp)
	return process, build, resp, c
}

func TestInfoRDeletesChildSA(t *testing.T) {
	h := newHarness(t)
	h.createChild(t, message.CreateChildSA, childReq{})
	ch := h.ike.Children[0]
	p, b, resp, _ := h.info(t, &message.Delete{Protocol: suite.ProtocolESP, SPIs: []uint32{ch.SPIOut}})
	if p != Done || b != Done {
		t.Fatalf("Process %s, Build %s; want done", p, b)
	}
	d, _ := message.Find(resp.Inner, message.PayloadDelete).(*message.Delete)
	if d == nil || d.Protocol != suite.ProtocolESP || len(d.SPIs) != 1 || d.SPIs[0] != ch.SPIIn {
		t.Fatalf("response %v, want a DELETE of our inbound SPI %08x", resp.Inner, ch.SPIIn)
	}
	if len(h.ike.Children) != 0 || ch.State != sa.ChildDeleted {
		t.Errorf("Child SA kept (%d left, state %s)", len(h.ike.Children), ch.State)
	}
	if len(h.env.dp.SAs) != 0 || len(h.env.dp.Policies) != 0 {
		t.Errorf("left in the data plane: %v %v", h.env.dp.SAs, h.env.dp.Policies)
	}
	if got := h.env.stats.Get(stats.ChildSAsDeleted); got != 1 {
		t.Errorf("%d Child SAs counted as deleted, want 1", got)
	}
	h.logHas(t, "child sa deleted", "reason=\"deleted by peer\"")
}

func TestInfoRDeletesCrossingOurDelete(t *testing.T) {
	// A Child SA we are deleting ourselves is removed but not listed
	// (RFC 7296 1.4.1).
	h := newHarness(t)
	h.createChild(t, message.CreateChildSA, childReq{})
	ch := h.ike.Children[0]
	ch.State = sa.ChildDeleting
	_, _, resp, _ := h.info(t, &message.Delete{Protocol: suite.ProtocolESP, SPIs: []uint32{ch.SPIOut}})
	if len(resp.Inner) != 0 {
		t.Errorf("response %v, want empty", resp.Inner)
	}
	if len(h.ike.Children) != 0 {
		t.Errorf("Child SA kept")
	}
}

func TestInfoRUnknownSPI(t *testing.T) {
	h := newHarness(t)
	h.createChild(t, message.CreateChildSA, childReq{})
	p, b, resp, _ := h.info(t, &message.Delete{Protocol: suite.ProtocolESP, SPIs: []uint32{0x99999999}})
	if p != Done || b != Done || len(resp.Inner) != 0 {
		t.Errorf("Process %s, Build %s, response %v; want done and empty", p, b, resp.Inner)
	}
	if len(h.ike.Children) != 1 {
		t.Errorf("a DELETE of an unknown SPI removed a Child SA")
	}
}

func TestInfoRDeletesIKESA(t *testing.T) {
	h := newHarness(t)
	p, b, resp, _ := h.info(t, &message.Delete{Protocol: suite.ProtocolIKE})
	if p != Destroy || b != Destroy || len(resp.Inner) != 0 {
		t.Errorf("Process %s, Build %s, response %v; want destroy and an empty response", p, b, resp.Inner)
	}
	if h.ike.State != sa.Deleting {
		t.Errorf("IKE SA %s, want DELETING", h.ike.State)
	}
}

func TestInfoRErrorNotify(t *testing.T) {
	h := newHarness(t)
	p, b, _, c := h.info(t, &message.Notify{NotifyType: message.AuthenticationFailed})
	if p != Failed || b != Failed {
		t.Errorf("Process %s, Build %s; want failed", p, b)
	}
	if c.Failure == nil || c.Failure.Reason != stats.AuthFailed {
		t.Errorf("failure %+v, want auth-failed", c.Failure)
	}
}

func TestInfoRLiveness(t *testing.T) {
	h := newHarness(t)
	p, b, resp, c := h.info(t)
	if p != Done || b != Done || len(resp.Inner) != 0 || c.Failure != nil {
		t.Errorf("empty INFORMATIONAL: Process %s, Build %s, response %v, failure %v", p, b, resp.Inner, c.Failure)
	}
}
