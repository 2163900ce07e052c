// Command spuctl is the operator's tool for spud (the data plane) and iked
// (the IKE daemon).
//
//	spuctl sa add src A dst B proto esp spi N reqid R mode tunnel aead 'rfc4106(gcm(aes))' 0xKEY 128 ...
//	spuctl sa del spi N [dir in|out] [dst B]
//	spuctl sa list [-json]      (page by page, in install order; -json: one object a line)
//	spuctl policy add src P dst P dir out tmpl src A dst B proto esp reqid R mode tunnel
//	spuctl policy del ID
//	spuctl policy list [-json]
//	spuctl spu list | drain N | add N | fail N (fault injection)
//	spuctl status [-json]       (the kernel, the steering carrier, each interface's modes)
//	spuctl stats [-json]
//
// and, talking to iked's control socket (-c):
//
//	spuctl list-conns
//	spuctl list-sas [CONN] [-json]   (page by page, in IKE SA unique id order; -json: one object a line)
//	spuctl initiate CONN [CHILD]        (or --ike CONN --child CHILD) [--timeout 30s]
//	spuctl terminate CONN [CHILD]       (or --ike CONN, --ike-id N, --child-id N)
//	spuctl rekey CONN [CHILD]           (or --ike-id N, --child-id N; --ike-sa rekeys the IKE SA)
//	spuctl load-initiate CONN -count N [-window 16] [-load-timeout D] [-max-failures N] [-background]
//	spuctl load-status CONN
//	spuctl reload
//	spuctl ike-stats
//
// and, on its own, a lab PKI for certificate authentication (pki.go):
//
//	spuctl pki ca DIR [-key ecdsa-p256|rsa3072|ed25519...] [-parent CADIR]
//	spuctl pki issue CADIR -id gw-a.example [-san ...] [-key ...] [-install CONFDIR]
//
// `sa add` and `policy add` take what `ip xfrm state add` and `ip xfrm
// policy add` take (see xfrmargs).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"io"
	"iter"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spugate/spugate/cmd/spuctl/xfrmargs"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/api"
)

var (
	socket     = flag.String("s", api.DefaultSocket, "spud's SA API socket")
	ikedSocket = flag.String("c", ikectl.DefaultSocket, "iked's control socket")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: spuctl [-s spud-socket] [-c iked-socket] sa|policy|spu|status|stats|list-conns|list-sas|initiate|terminate|load-initiate|load-status|rekey|reload|ike-stats|pki ...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(args); err != nil {
		fmt.Fprintf(os.Stderr, "spuctl: %v\n", err)
		os.Exit(1)
	}
}

func dial() (*api.Client, error) { return api.Dial(*socket) }

func run(args []string) error {
	switch args[0] {
	case "sa":
		return saCmd(args[1:])
	case "policy":
		return policyCmd(args[1:])
	case "spu":
		return spuCmd(args[1:])
	case "stats":
		return stats(args[1:])
	case "status":
		return status(args[1:])
	case "list-conns", "list-sas", "initiate", "terminate", "rekey", "reload", "ike-stats", "load-initiate", "load-status":
		return ikeCmd(args[0], args[1:])
	case "pki":
		return pkiCmd(args[1:], os.Stdout)
	}
	return fmt.Errorf("unknown command %q (sa, policy, spu, status, stats, list-conns, list-sas, initiate, terminate, load-initiate, load-status, rekey, reload, ike-stats, pki)", args[0])
}

func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ad := range addrs {
		if n, ok := ad.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

func saCmd(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("sa: want add, del or list")
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	switch args[0] {
	case "add":
		sa, err := xfrmargs.ParseSA(args[1:], isLocal)
		if err != nil {
			return fmt.Errorf("sa add: %w", err)
		}
		return c.AddSA(sa)
	case "del":
		id := api.SAID{Dir: api.In}
		rest := args[1:]
		for i := 0; i+1 < len(rest); i += 2 {
			switch rest[i] {
			case "spi":
				n, err := strconv.ParseUint(rest[i+1], 0, 32)
				if err != nil {
					return fmt.Errorf("sa del: spi %q", rest[i+1])
				}
				id.SPI = uint32(n)
			case "dir":
				id.Dir = api.Dir(rest[i+1])
			case "dst":
				a, err := netip.ParseAddr(rest[i+1])
				if err != nil {
					return fmt.Errorf("sa del: dst %q", rest[i+1])
				}
				id.Remote = a
			default:
				return fmt.Errorf("sa del: unknown keyword %q", rest[i])
			}
		}
		if id.SPI == 0 {
			return fmt.Errorf("sa del: spi is required")
		}
		return c.DelSA(id)
	case "list":
		asJSON, err := listFlags("sa list", args[1:])
		if err != nil {
			return err
		}
		return listPages(os.Stdout, c.SAPages(0), asJSON, printSA, appendSAJSON)
	}
	return fmt.Errorf("sa: unknown %q (add, del, list)", args[0])
}

// listFlags parses the flags of a list command: -json.
func listFlags(name string, args []string) (asJSON bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	j := fs.Bool("json", false, "one JSON object a line")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("%s: unexpected %q", name, fs.Arg(0))
	}
	return *j, nil
}

// listPages prints a dump page by page as spud gives it (in install order),
// so that a table of any size lists in the memory of a page, as text
// (print) or one JSON object a line (appendJSON: json.Marshal's bytes).
// SAs that spud could not read (api.Incomplete) are said in a last line,
// "# N SAs not listed: why" or {"missing":N,"missing_reason":why}, and
// the listing fails.
func listPages[T any](out io.Writer, pages iter.Seq2[[]T, error], asJSON bool, print func(*bufio.Writer, T),
	appendJSON func([]byte, *T) ([]byte, error)) error {
	w := bufio.NewWriterSize(out, 64<<10)
	for page, err := range pages {
		if err != nil {
			var inc *api.Incomplete
			if errors.As(err, &inc) {
				if asJSON {
					b, _ := json.Marshal(struct {
						Missing       int    `json:"missing"`
						MissingReason string `json:"missing_reason"`
					}{inc.Missing, inc.Reason})
					w.Write(append(b, '\n'))
				} else {
					fmt.Fprintf(w, "# %d SAs not listed: %s\n", inc.Missing, inc.Reason)
				}
			}
			w.Flush()
			return err
		}
		for i := range page {
			if asJSON {
				b, err := appendJSON(w.AvailableBuffer(), &page[i])
				if err != nil {
					w.Flush()
					return err
				}
				w.Write(append(b, '\n'))
			} else {
				print(w, page[i])
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// marshalJSON is listPages's appendJSON for the listings without their
// own: encoding/json.
func marshalJSON[T any](b []byte, x *T) ([]byte, error) { return appendMarshal(b, *x) }

// printSA writes an SA as two or three lines; with strconv's appends, not
// fmt's, since a listing of a million SAs spends its time here.
func printSA(w *bufio.Writer, s api.SAState) {
	src, dst := s.Local, s.Remote
	if s.Dir == api.In {
		src, dst = dst, src
	}
	b := w.AvailableBuffer()
	b = append(b, "sa 0x"...)
	b = appendHex8(b, s.SPI)
	b = append(b, ' ')
	b = append(b, s.Dir...)
	for n := len(s.Dir); n < 3; n++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	b = src.AppendTo(b)
	b = append(b, " -> "...)
	b = dst.AppendTo(b)
	b = append(b, ' ')
	b = append(b, s.Suite.String()...)
	b = append(b, ' ')
	b = append(b, s.Mode...)
	b = append(b, " reqid "...)
	b = strconv.AppendUint(b, uint64(s.ReqID), 10)
	b = append(b, " spu "...)
	b = strconv.AppendInt(b, int64(s.SPU), 10)
	b = append(b, " (logical "...)
	if s.Logical == nil {
		b = append(b, '?')
	} else {
		b = strconv.AppendInt(b, int64(*s.Logical), 10)
	}
	b = append(b, ')')
	if s.Encap != nil {
		b = append(b, " udp-encap "...)
		b = strconv.AppendUint(b, uint64(s.Encap.LocalPort), 10)
		b = append(b, "->"...)
		b = strconv.AppendUint(b, uint64(s.Encap.RemotePort), 10)
	}
	if s.ESN {
		b = append(b, " esn"...)
	}
	if s.Dir == api.Out && s.Active {
		b = append(b, " active"...)
	}
	if s.Name != "" {
		b = append(b, ' ')
		b = append(b, s.Name...)
	}
	b = append(b, "\n    packets "...)
	b = strconv.AppendUint(b, s.Stats.Packets, 10)
	b = append(b, " bytes "...)
	b = strconv.AppendUint(b, s.Stats.Bytes, 10)
	b = append(b, " seq "...)
	b = strconv.AppendUint(b, s.Stats.Seq, 10)
	if len(s.Stats.Drops) > 0 {
		b = append(b, " drops: "...)
		b = append(b, kv(s.Stats.Drops)...)
	}
	b = append(b, '\n')
	if len(s.LocalTS)+len(s.RemoteTS) > 0 {
		b = append(b, "    selectors "...)
		b = appendSelectors(b, s.LocalTS)
		b = append(b, " === "...)
		b = appendSelectors(b, s.RemoteTS)
		b = append(b, '\n')
	}
	w.Write(b)
}

// appendHex8 appends v as %08x does.
func appendHex8(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for i := 28; i >= 0; i -= 4 {
		b = append(b, digits[v>>uint(i)&0xf])
	}
	return b
}

func tsList(ts []ipsec.Selector) string {
	if len(ts) == 0 {
		return "any"
	}
	return ipsec.Selectors(ts)
}

func kv(m map[string]uint64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var p []string
	for _, k := range keys {
		p = append(p, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(p, " ")
}

func policyCmd(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("policy: want add, del or list")
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	switch args[0] {
	case "add":
		p, err := xfrmargs.ParsePolicy(args[1:])
		if err != nil {
			return fmt.Errorf("policy add: %w", err)
		}
		r, err := c.AddPolicy(p)
		if err != nil {
			return err
		}
		fmt.Printf("policy %d on spu %d (logical %d)\n", r.ID, r.SPU, r.Logical)
		return nil
	case "del":
		if len(args) != 2 {
			return fmt.Errorf("policy del: want the policy id")
		}
		n, err := strconv.ParseUint(args[1], 0, 32)
		if err != nil {
			return fmt.Errorf("policy del: id %q", args[1])
		}
		return c.DelPolicy(uint32(n))
	case "list":
		asJSON, err := listFlags("policy list", args[1:])
		if err != nil {
			return err
		}
		return listPages(os.Stdout, c.PolicyPages(0), asJSON, printPolicy, marshalJSON[api.PolicyState])
	}
	return fmt.Errorf("policy: unknown %q (add, del, list)", args[0])
}

func printPolicy(w *bufio.Writer, p api.PolicyState) {
	fmt.Fprintf(w, "policy %d %s %s === %s", p.ID, p.Action, tsList(p.LocalTS), tsList(p.RemoteTS))
	if p.Action == api.Protect {
		fmt.Fprintf(w, " tunnel %s -> %s reqid %d", p.Local, p.Remote, p.ReqID)
		if p.OutSPI != 0 {
			fmt.Fprintf(w, " sa 0x%08x", p.OutSPI)
		} else {
			fmt.Fprintf(w, " no sa")
		}
	}
	fmt.Fprintf(w, " spu %d (logical %s) packets %d acquires %d\n", p.SPU, logical(p.Logical), p.Packets, p.Acquires)
}

// logical shows a dump's logical SPU, which spud always fills in; "?" for
// a spud that did not.
func logical(l *int) string {
	if l == nil {
		return "?"
	}
	return strconv.Itoa(*l)
}

func spuCmd(args []string) error {
	if len(args) == 0 || args[0] == "list" {
		return spuList()
	}
	if len(args) != 2 {
		return fmt.Errorf("spu: want list, drain N, add N or fail N")
	}
	id, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("spu %s: %q is not an SPU number", args[0], args[1])
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	switch args[0] {
	case "drain":
		_, err = c.DrainSPU(id)
	case "add":
		_, err = c.AddSPU(id)
	case "fail":
		// Fault injection: the SPU's loop panics, as a bug would.
		err = c.FailSPU(id)
	default:
		return fmt.Errorf("spu: unknown %q (list, drain, add, fail)", args[0])
	}
	if err != nil {
		return err
	}
	return spuList()
}

func spuList() error {
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.SPUs()
	if err != nil {
		return err
	}
	fmt.Printf("%d logical SPUs, map generation %d\n", l.Logical, l.MapGen)
	fmt.Printf("%-4s %-4s %-8s %8s %8s %8s %6s  %s\n", "spu", "cpu", "state", "logical", "tunnels", "sas", "busy", "logical spus")
	for _, s := range l.SPUs {
		fmt.Printf("%-4d %-4d %-8s %8d %8d %8d %5.1f%%  %s\n", s.ID, s.CPU, s.State, len(s.Logical), s.Tunnels, s.SAs, 100*s.Busy, ranges(s.Logical))
	}
	return nil
}

// ranges writes 0,1,2,3,7 as 0-3,7.
func ranges(l []int) string {
	var p []string
	for i := 0; i < len(l); {
		j := i
		for j+1 < len(l) && l[j+1] == l[j]+1 {
			j++
		}
		if j > i {
			p = append(p, fmt.Sprintf("%d-%d", l[i], l[j]))
		} else {
			p = append(p, strconv.Itoa(l[i]))
		}
		i = j + 1
	}
	return strings.Join(p, ",")
}

// status shows what spud got from the kernel and the NICs: the steering
// carrier and why, the BPF features probed, and per interface the XDP and
// AF_XDP modes.
func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print spud's answer as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := c.Hello("spuctl")
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.MarshalIndent(struct {
			Server     string          `json:"server"`
			Steering   api.Steering    `json:"steering"`
			Interfaces []api.Interface `json:"interfaces"`
		}{h.Server, h.Steering, h.Interfaces}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	st := h.Steering
	fmt.Printf("%s on kernel %s\n", h.Server, st.Kernel)
	fmt.Printf("steering carrier: %s", st.Carrier)
	if st.CarrierReason != "" {
		fmt.Printf(" (%s)", st.CarrierReason)
	}
	fmt.Println()
	names := make([]string, 0, len(st.Features))
	for n := range st.Features {
		names = append(names, n)
	}
	sort.Strings(names)
	var feats []string
	for _, n := range names {
		feats = append(feats, n+"="+st.Features[n])
	}
	fmt.Printf("bpf features: %s\n", strings.Join(feats, " "))
	fmt.Printf("%-10s %-9s %6s %-7s %-8s %-7s %-11s %9s %-8s %s\n", "interface", "side", "queues", "xdp", "af_xdp", "carrier", "need_wakeup", "tx_budget", "threaded", "driver xdp features")
	for _, i := range h.Interfaces {
		side := "wan"
		if i.Protected {
			side = "protected"
		}
		fmt.Printf("%-10s %-9s %6d %-7s %-8s %-7s %-11v %9d %-8s %s\n", i.Name, side, i.Queues, i.XDPMode, i.XSKMode, i.Carrier, i.NeedWakeup, i.TxBudget, i.ThreadedNAPI, i.DriverXDP)
	}
	return nil
}

// stats shows spud's counters: per SPU, then the totals, the steering
// program's and the sockets'. warm is the SAs holding their cipher state
// now, cooled the times an idle one dropped it (spud -cipher-idle).
func stats(args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print spud's answer as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Stats()
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	fmt.Printf("%-4s %10s %10s %10s %10s %10s %10s %8s %6s %9s %10s\n", "spu", "rx", "tx", "encap", "decap", "handoff>", "handoff<", "bypass", "busy", "warm", "cooled")
	for _, s := range st.SPUs {
		fmt.Printf("%-4d %10d %10d %10d %10d %10d %10d %8d %5.1f%% %9d %10d\n", s.ID, s.RxPackets, s.TxPackets, s.Encap, s.Decap, s.HandoffOut, s.HandoffIn, s.Bypass, 100*s.Busy, s.WarmSAs, s.Cooled)
	}
	// ESP reassembled on one SPU and decapsulated on its SPI's: rare
	// enough to show only where it happened.
	var frag []string
	for _, s := range st.SPUs {
		if s.FragHandoff > 0 {
			frag = append(frag, fmt.Sprintf("spu%d=%d", s.ID, s.FragHandoff))
		}
	}
	if len(frag) > 0 {
		fmt.Printf("reassembled esp handed to its anchor: %s\n", strings.Join(frag, " "))
	}
	if len(st.Drops) > 0 {
		fmt.Printf("drops: %s\n", kv(st.Drops))
	}
	if len(st.XDP) > 0 {
		fmt.Printf("xdp (carrier %s): %s\n", st.Carrier, kv(st.XDP))
	}
	if len(st.Links) > 0 {
		fmt.Printf("links: %s\n", kv(st.Links))
	}
	if len(st.Refused) > 0 {
		fmt.Printf("refused: %s\n", kv(st.Refused))
	}
	for _, s := range st.Sockets {
		fmt.Printf("socket %s/%d (spu %d): rx %d tx %d rx_dropped %d fill_empty %d tx_full %d\n",
			s.Interface, s.Queue, s.SPU, s.Rx, s.Tx, s.RxDropped, s.FillEmpty, s.TxFull)
	}
	return nil
}
