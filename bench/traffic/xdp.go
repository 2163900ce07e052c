package traffic

import (
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// xdpPass is the XDP_PASS verdict, also the redirect's fallback when the
// rx queue has no socket.
const xdpPass = 2

// SinkProgram is the sink's XDP program and its XSKMAP (indexed by rx
// queue): IPv4 UDP to port, unfragmented and without IP options, goes to the
// AF_XDP socket of its rx queue; everything else to the kernel.
type SinkProgram struct {
	Prog *ebpf.Program
	XSKs *ebpf.Map
}

// NewSinkProgram loads the program for up to queues rx queues. It is
// written in BPF assembly so that nothing needs clang.
func NewSinkProgram(port uint16, queues int) (*SinkProgram, error) {
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(max(queues, 1))})
	if err != nil {
		return nil, fmt.Errorf("traffic: sink XSKMAP: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bench_sink", Type: ebpf.XDP, License: "GPL", Instructions: sinkInsns(port, xsks.FD())})
	if err != nil {
		xsks.Close()
		return nil, fmt.Errorf("traffic: sink XDP program: %w", err)
	}
	return &SinkProgram{Prog: prog, XSKs: xsks}, nil
}

// sinkInsns is the program. Loads of packet data are host-endian (little),
// so the constants they are compared with are byte-swapped.
func sinkInsns(port uint16, xsksFD int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, HeaderLen),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, int32(bits.ReverseBytes16(0x0800)), "pass"),
		asm.LoadMem(asm.R5, asm.R2, EthLen, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "pass"),
		asm.LoadMem(asm.R5, asm.R2, EthLen+6, asm.Half), // flags and fragment offset
		asm.And.Imm(asm.R5, int32(bits.ReverseBytes16(0x3fff))),
		asm.JNE.Imm(asm.R5, 0, "pass"),
		asm.LoadMem(asm.R5, asm.R2, EthLen+9, asm.Byte),
		asm.JNE.Imm(asm.R5, 17, "pass"),
		asm.LoadMem(asm.R5, asm.R2, EthLen+IPv4Len+2, asm.Half),
		asm.JNE.Imm(asm.R5, int32(bits.ReverseBytes16(port)), "pass"),
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word), // rx_queue_index
		asm.LoadMapPtr(asm.R1, xsksFD),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// Register puts a socket in the XSKMAP slot of its queue.
func (p *SinkProgram) Register(queue int, fd int) error {
	if err := p.XSKs.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("traffic: register socket of queue %d: %w", queue, err)
	}
	return nil
}

// Close unloads the program and its map (an attachment holds its own
// reference to the program).
func (p *SinkProgram) Close() error {
	p.Prog.Close()
	return p.XSKs.Close()
}
