package esp

// Packet is one entry of a batch: the caller fills Buf, Off and Len; the
// batch call replaces Off and Len with the result's and sets Verdict,
// Reason and MTU as in Result.
type Packet struct {
	// Buf holds the packet at Buf[Off:Off+Len], with the headroom and
	// tailroom Encap or Decap needs around it.
	Buf      []byte
	Off, Len int
	// Verdict, Reason and MTU are the result's (see Result and Outcome).
	Verdict Verdict
	Reason  Reason
	MTU     int
}

// EncapBatch runs Encap on every packet of pkts, in order, and publishes
// the counters once for the whole batch. It allocates nothing.
func (sa *SA) EncapBatch(pkts []Packet) {
	for i := range pkts {
		p := &pkts[i]
		start, length, mtu, v, why := sa.encap(p.Buf, p.Off, p.Len)
		p.Verdict, p.Reason, p.MTU = v, why, mtu
		if v != Drop {
			p.Off, p.Len = start, length
		}
	}
	sa.publish()
}

// DecapBatch runs Decap on every packet of pkts, in order, and publishes
// the counters once for the whole batch. It allocates nothing.
func (sa *SA) DecapBatch(pkts []Packet) {
	for i := range pkts {
		p := &pkts[i]
		start, length, why := sa.decap(p.Buf, p.Off, p.Len, nil)
		p.Verdict, p.Reason, p.MTU = Forward, why, 0
		if why != None {
			p.Verdict = Drop
			continue
		}
		p.Off, p.Len = start, length
	}
	sa.publish()
}
