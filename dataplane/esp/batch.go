package esp

// Packet is one entry of a batch: the caller fills Buf, Off and Len; the
// batch call replaces Off and Len with the result's and sets Verdict,
// Reason and MTU as in Result.
type Packet struct {
	Buf      []byte
	Off, Len int
	Verdict  Verdict
	Reason   Reason
	MTU      int
}

// EncapBatch runs Encap on every packet of pkts, in order, and publishes
// the counters once for the whole batch. It allocates nothing.
func (sa *SA) EncapBatch(pkts []Packet) {
	for i := range pkts {
		p := &pkts[i]
		r := sa.encap(p.Buf, p.Off, p.Len)
		p.set(r)
	}
	sa.publish()
}

// DecapBatch runs Decap on every packet of pkts, in order, and publishes
// the counters once for the whole batch. It allocates nothing.
func (sa *SA) DecapBatch(pkts []Packet) {
	for i := range pkts {
		p := &pkts[i]
		r := sa.decap(p.Buf, p.Off, p.Len)
		p.set(r)
	}
	sa.publish()
}

func (p *Packet) set(r Result) {
	p.Verdict, p.Reason, p.MTU = r.Verdict, r.Reason, r.MTU
	if r.Verdict != Drop {
		p.Off, p.Len = r.Off, r.Len
	}
}
