package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/spf13/cobra"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// capturePoints are the SPU's capture points, in spud's order.
var capturePoints = []string{"esp-in", "clear-out", "clear-in", "esp-out", "drop"}

// captureOptions are spuctl capture's flags.
type captureOptions struct {
	spus     []int
	spi      string
	reqid    uint32
	tunnel   string
	points   string
	count    int
	duration time.Duration
	snaplen  int
	file     string
}

func (a *app) captureCommand() *cobra.Command {
	var o captureOptions
	cmd := &cobra.Command{
		Use:   "capture -w FILE [--spu N] [--spi X | --reqid N | --tunnel NAME] [--point P,...] [--count N] [--duration D]",
		Short: "Capture what the SPUs see into a pcapng file",
		Long: `Copy the packets spud's SPUs see into a pcapng file: ESP as received
(esp-in), the cleartext after decapsulation (clear-out), cleartext before
encapsulation (clear-in), ESP as sent (esp-out) and the packets dropped
(drop), each an IP packet (LINKTYPE_RAW) on an interface named after its
SPU and point ("spu0 esp-in", "spu1 drop unknown_spi": a drop's interface
names its reason). tcpdump on the gateway does not see this traffic: the
XDP program takes it before the kernel's stack.

The capture stops after --count packets, after --duration, or on ^C.
The SPUs copy into bounded rings (at most 4 MiB each); a copy that finds
its ring full is lost and counted, the packet goes on. With -w - the file
goes to standard output: spuctl capture -w - | tshark -r -`,
		Example: `  spuctl capture --tunnel net-net --count 100 -w tunnel.pcapng
  spuctl capture --spu 0 --point drop --duration 30s -w drops.pcapng
  spuctl capture --spi 0xc1a0f00d -w - | tshark -r -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request()
			if err != nil {
				return err
			}
			return a.capture(req, &o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.spus, "spu", nil, "capture on these SPUs only (default: all)")
	f.StringVar(&o.spi, "spi", "", "one SA's packets: its SPI (0x... or decimal)")
	f.Uint32Var(&o.reqid, "reqid", 0, "one Child SA's packets, every SA of its reqid")
	f.StringVar(&o.tunnel, "tunnel", "", "one Child SA's packets, by its SAs' name (conn/child, or conn)")
	f.StringVar(&o.points, "point", "all", "capture points: "+strings.Join(capturePoints, ",")+" (comma-separated) or all")
	f.IntVar(&o.count, "count", 0, "stop after this many packets (0: no limit)")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (0: until ^C or --count)")
	f.IntVar(&o.snaplen, "snaplen", 2048, "bytes kept of each packet (1..65535)")
	f.StringVarP(&o.file, "write", "w", "", "the pcapng file to write (- for standard output)")
	cmd.RegisterFlagCompletionFunc("point", func(_ *cobra.Command, _ []string, typed string) ([]string, cobra.ShellCompDirective) {
		// A list: complete its last element after those typed.
		head := typed[:strings.LastIndex(typed, ",")+1]
		var c []string
		for _, p := range append([]string{"all"}, capturePoints...) {
			if !strings.Contains(","+head, ","+p+",") && (head == "" || p != "all") {
				c = append(c, head+p)
			}
		}
		return c, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	})
	return cmd
}

// request checks the flags and makes the capture.start request.
func (o *captureOptions) request() (api.CaptureStart, error) {
	req := api.CaptureStart{SPUs: o.spus, ReqID: o.reqid, Tunnel: o.tunnel, Count: o.count,
		DurationMS: o.duration.Milliseconds(), Snaplen: o.snaplen}
	if o.file == "" {
		return req, usagef("-w FILE is required (- for standard output)")
	}
	if o.spi != "" {
		v, err := strconv.ParseUint(o.spi, 0, 32)
		if err != nil || v == 0 {
			return req, usagef("--spi %q: not an SPI (0x... or decimal, not 0)", o.spi)
		}
		req.SPI = uint32(v)
	}
	if n := given(req.SPI != 0, o.reqid != 0, o.tunnel != ""); n > 1 {
		return req, usagef("give one of --spi, --reqid and --tunnel")
	}
	if o.count < 0 || o.duration < 0 {
		return req, usagef("--count %d, --duration %v: negative", o.count, o.duration)
	}
	if o.snaplen < 1 || o.snaplen > 65535 {
		return req, usagef("--snaplen %d: not in 1..65535", o.snaplen)
	}
	for _, s := range o.spus {
		if s < 0 {
			return req, usagef("--spu %d: negative", s)
		}
	}
	if o.points != "all" {
		for _, p := range strings.Split(o.points, ",") {
			if !slices.Contains(capturePoints, p) {
				return req, usagef("--point %q: not one of %s", p, strings.Join(capturePoints, ", "))
			}
		}
		req.Points = o.points
	}
	return req, nil
}

// given counts the flags given of a set that excludes each other.
func given(set ...bool) int {
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	return n
}

// pcapFile writes capture records as pcapng, an interface per SPU and
// point (and drop reason), added as records need them.
type pcapFile struct {
	w     *pcapgo.NgWriter
	snap  int
	intfs map[string]int
}

func newPCAPFile(out io.Writer, snap int) (*pcapFile, error) {
	// The first interface is in the section's header: a file without
	// packets is still one tshark reads.
	first := pcapgo.NgInterface{Name: "spud", Description: "spud's SPUs (spuctl capture)", LinkType: layers.LinkTypeRaw,
		SnapLength: uint32(snap), OS: "linux"}
	w, err := pcapgo.NewNgWriterInterface(out, first, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "spuctl capture", OS: "linux"}})
	if err != nil {
		return nil, err
	}
	return &pcapFile{w: w, snap: snap, intfs: map[string]int{}}, nil
}

func (p *pcapFile) write(r *api.CaptureRecord, data []byte) error {
	name := fmt.Sprintf("spu%d %s", r.SPU, r.Point)
	if r.Reason != "" {
		name += " " + r.Reason
	}
	id, ok := p.intfs[name]
	if !ok {
		desc := fmt.Sprintf("SPU %d, capture point %s", r.SPU, r.Point)
		if r.Reason != "" {
			desc += ", dropped: " + r.Reason
		}
		var err error
		if id, err = p.w.AddInterface(pcapgo.NgInterface{Name: name, Description: desc, Comment: r.Reason,
			LinkType: layers.LinkTypeRaw, SnapLength: uint32(p.snap), OS: "linux"}); err != nil {
			return err
		}
		p.intfs[name] = id
	}
	return p.w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(0, r.Time), CaptureLength: len(data),
		Length: r.Len, InterfaceIndex: id}, data)
}

// capture runs a capture to its end, writing the file.
func (a *app) capture(req api.CaptureStart, o *captureOptions) error {
	c, err := a.dialSpud()
	if err != nil {
		return err
	}
	defer c.Close()
	// ^C from here on ends the capture and leaves a whole file.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	st, err := c.CaptureStart(req)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	// Until spud ends it, a capture left behind would hold its rings
	// until spud sees nobody reads it.
	ended := false
	defer func() {
		if !ended {
			c.CaptureStop(st.ID)
		}
	}()
	var out io.Writer = a.out
	if o.file != "-" {
		f, err := os.Create(o.file)
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		defer f.Close()
		out = f
	}
	pf, err := newPCAPFile(out, st.Snaplen)
	if err != nil {
		return fmt.Errorf("capture: %s: %w", o.file, err)
	}
	what := "everything"
	switch {
	case st.SPI != 0:
		what = fmt.Sprintf("spi 0x%08x", st.SPI)
	case st.ReqID != 0:
		what = fmt.Sprintf("reqid %d", st.ReqID)
	}
	fmt.Fprintf(a.errOut, "spuctl: capturing %s on spu %v, points %s, snaplen %d\n", what, st.SPUs, o.points, st.Snaplen)
	n, lost, why := 0, uint64(0), ""
	for why == "" {
		select {
		case <-sig:
			why = "interrupted"
			continue
		default:
		}
		page, data, err := c.CaptureRead(st.ID, 500*time.Millisecond)
		if err != nil {
			var e *unixrpc.Error
			if errors.As(err, &e) && e.Code == unixrpc.CodeNotFound {
				why, ended = "ended by spud", true
				break
			}
			pf.w.Flush()
			return fmt.Errorf("capture: %w", err)
		}
		for i := range page.Records {
			r := &page.Records[i]
			if r.N > len(data) {
				return fmt.Errorf("capture: spud's page is short of its records' bytes")
			}
			if err := pf.write(r, data[:r.N]); err != nil {
				return fmt.Errorf("capture: %s: %w", o.file, err)
			}
			data = data[r.N:]
			n++
		}
		if err := pf.w.Flush(); err != nil {
			return fmt.Errorf("capture: %s: %w", o.file, err)
		}
		lost = page.Lost
		if page.Done {
			why, ended = page.Why, true
		}
	}
	if err := pf.w.Flush(); err != nil {
		return fmt.Errorf("capture: %s: %w", o.file, err)
	}
	fmt.Fprintf(a.errOut, "spuctl: %d packets captured (%s), %d copies lost to full rings\n", n, why, lost)
	return nil
}
