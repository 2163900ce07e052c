package xsk_test

import (
	"fmt"
	"time"

	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/dataplane/xsk/xsktest"
)

// An SPU-style loop over one port: receive a batch, read the steering
// metadata, grow each packet at the front, send it back out (hairpin), and
// sleep in poll(2) when idle. It runs here over a fake pair; over a real
// socket only the constructor changes.
func Example() {
	wire, port, err := xsktest.NewPair(xsktest.Config{MetaLen: 4})
	if err != nil {
		panic(err)
	}
	defer wire.Close()
	defer port.Close()
	port.SetSteer(func(pkt, meta []byte) bool { meta[0] = 7; return true }) // "anchor SPU 7"
	port.Inject([]byte("payload"))

	poller := xsk.Poller{Mode: xsk.Adaptive, Waiter: xsk.NewWaiter([]xsk.Port{port}), MaxSleep: 10 * time.Millisecond}
	frames := make([]xsk.Frame, xsk.BatchSize)
	for i := 0; i < 100; i++ {
		port.Complete()
		n := port.Receive(frames)
		for j := range frames[:n] {
			f := &frames[j]
			anchor := f.Meta(4)[0]
			copy(f.Prepend(4), "ENC:")
			fmt.Printf("anchor %d: %s\n", anchor, f.Packet())
		}
		q := port.Transmit(frames[:n])
		port.Release(frames[q:n])
		if _, err := poller.Idle(n > 0); err != nil {
			panic(err)
		}
	}
	got := wire.Receive(frames)
	fmt.Printf("the wire got %d: %s\n", got, frames[0].Packet())
	// Output:
	// anchor 7: ENC:payload
	// the wire got 1: ENC:payload
}
