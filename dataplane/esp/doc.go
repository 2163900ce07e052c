// Package esp is spugate's ESP engine (RFC 4303): it encapsulates and
// decapsulates IP packets in place, in tunnel or transport mode, over IPv4
// or IPv6 in any combination, optionally inside UDP (RFC 3948).
//
// Suites: AES-GCM with a 16-byte ICV (RFC 4106), ChaCha20-Poly1305 (RFC
// 7634) and, as the legacy suite, AES-CBC with HMAC-SHA2-256-128 (RFC 3602,
// RFC 4868). AEAD IVs are the 64-bit sequence number, so they never repeat;
// CBC IVs are the sequence number encrypted under a per-SA IV key.
//
// An SA is one direction and has one owner goroutine (its anchor SPU). The
// per-packet path takes no lock and allocates nothing:
//
//	outbound: Encap(buf, off, n)   inner IP packet -> [outer IP][UDP][ESP][IV] inner [pad][ICV]
//	inbound:  ParseOuter(p)        SPI for the SA table lookup
//	          Decap(buf, off, n)   parse outer, replay Check, ICV and decrypt,
//	                               padding and next header, replay Update,
//	                               RFC 6040 ECN, traffic selectors, lifetimes
//
// Encap grows the packet into the caller's headroom and tailroom: give at
// least Headroom bytes before off (MaxHeadGrowth plus a 14-byte Ethernet
// header the caller adds afterwards) and Tailroom bytes after off+n within
// len(buf). Decap only shrinks. Every drop is counted by Reason; Stats reads
// the counters from any goroutine. Events (lifetimes, sequence number
// exhaustion) are latched and collected with TakeEvents, once per batch.
//
// An SA keeps its keys and makes its cipher state at its first packet
// (the only allocation on its packet path, once); an Owner (one per SPU)
// lists the SAs that hold one and drops it from those idle for a while
// (Sweep), so that a million mostly idle tunnels do not each hold two
// expanded AES keys.
package esp
