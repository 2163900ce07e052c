package esp

import (
	"encoding/binary"
	"os"
	"testing"
)

// writePcap writes IP packets as Ethernet frames to a classic pcap file
// (the format is a 24-byte file header and a 16-byte header per record).
func writePcap(t *testing.T, path string, pkts [][]byte) {
	t.Helper()
	var b []byte
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	b = append(b, hdr...)
	for i, p := range pkts {
		eth := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00}
		if p[0]>>4 == 6 {
			eth[12], eth[13] = 0x86, 0xdd
		}
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(eth)+len(p)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(eth)+len(p)))
		b = append(b, rec...)
		b = append(b, eth...)
		b = append(b, p...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
