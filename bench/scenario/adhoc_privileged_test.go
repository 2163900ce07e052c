package scenario

import (
	"testing"
	"time"
)

func TestPrivilegedAdhocIkedRekey(t *testing.T) {
	e := testEnv(t)
	c := Rekey{Tunnels: 2, Interval: 2 * time.Second, Rate: 5000, Duration: 6 * time.Second, Iked: true}
	r, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r.Iked)
}
