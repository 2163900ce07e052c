package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
)

// ivBatch is how many CBC IVs are made at a time.
const ivBatch = 8

// cbcIVs makes the IVs of an outbound CBC SA: the IV of sequence number s
// is AES under the IV key of the block SPI || 0 || s (big-endian), an
// encrypted counter. One AES block per packet costs its full latency
// (about 20 ns here), while the counter is what AES-CTR encrypts: its
// keystream is the IVs of consecutive sequence numbers, eight blocks at a
// time through the pipelined assembly, about 2 ns an IV. Sequence numbers
// are used once each and in order, so the stream stays in step with the
// SA; after Restore it is set up again at the restored number. An IV is
// the same whichever way it is made, so the single-block path (for a
// number out of step, which the SA never asks for) agrees with the batch.
type cbcIVs struct {
	stream    cipher.Stream // CTR keystream, at the counter of streamSeq
	streamSeq uint64
	pool      [ivBatch * aes.BlockSize]byte // IVs of poolSeq, poolSeq+1, ...
	poolSeq   uint64                        // 0: the pool is empty
}

// zeroBlocks is what the keystream is XORed into.
var zeroBlocks [ivBatch * aes.BlockSize]byte

// resetIVs points the IV keystream at the next sequence number to send.
// It allocates (a CTR); warmUp and Restore call it.
func (sa *SA) resetIVs(w *warm) {
	c := w.cbc
	if c == nil || c.ivCipher == nil || sa.dir != Outbound {
		return
	}
	next := sa.seq.Load() + 1
	ctr := c.ivIn
	binary.BigEndian.PutUint64(ctr[8:16], next)
	c.ivs = cbcIVs{stream: cipher.NewCTR(c.ivCipher, ctr[:]), streamSeq: next}
}

// ivFor writes the IV of sequence number seq into iv.
func (sa *SA) ivFor(w *warm, iv []byte, seq uint64) {
	c := w.cbc
	v := &c.ivs
	if i := seq - v.poolSeq; v.poolSeq != 0 && i < ivBatch {
		copy(iv, v.pool[i*aes.BlockSize:(i+1)*aes.BlockSize])
		return
	}
	if seq == v.streamSeq && v.stream != nil {
		v.stream.XORKeyStream(v.pool[:], zeroBlocks[:])
		v.poolSeq, v.streamSeq = seq, seq+ivBatch
		copy(iv, v.pool[:aes.BlockSize])
		return
	}
	binary.BigEndian.PutUint64(c.ivIn[8:16], seq)
	c.ivCipher.Encrypt(iv, c.ivIn[:])
}
