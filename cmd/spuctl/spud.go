package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spugate/spugate/cmd/spuctl/xfrmargs"
	"github.com/spugate/spugate/dataplane/api"
)

// spudCommands are the commands that talk to spud's SA API.
func (a *app) spudCommands() []*cobra.Command {
	return []*cobra.Command{a.saCommand(), a.policyCommand(), a.spuCommand(), a.statusCommand(), a.statsCommand(), a.captureCommand()}
}

func (a *app) saCommand() *cobra.Command {
	sa := &cobra.Command{
		Use:   "sa",
		Short: "Add, delete and list spud's SAs",
		Long: `The SAs installed in spud, as ip xfrm state does for the kernel's: add one
in ip-xfrm syntax, delete one by SPI, list them with their SPU and counters.`,
		Example: `  spuctl sa list
  spuctl sa del spi 0x5002 dir in`,
	}
	add := &cobra.Command{
		Use:   "add src A dst B proto esp spi N reqid R mode tunnel|transport (aead ALGO KEY ICV | enc ALGO KEY auth-trunc ALGO KEY LEN) [encap espinudp SPORT DPORT 0.0.0.0] [replay-window N] [flag esn] [sel src P dst P] [dir in|out] [name NAME]",
		Short: "Install an SA, in the words of ip xfrm state add",
		Long: `Install an SA in spud. The arguments are what 'ip xfrm state add' takes
(see docs/dataplane.md): the tunnel's ends (src, dst: the one that is a
local address makes the SA outbound), SPI, reqid, mode, the algorithms
(aead, or enc and auth-trunc), and optionally UDP encapsulation, the
replay window, ESN, the selectors, the direction and a name.`,
		Example: `  spuctl sa add src 198.18.0.2 dst 198.18.0.1 proto esp spi 0x5002 reqid 7 mode tunnel \
      aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128`,
		Args: cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			sa, err := xfrmargs.ParseSA(args, isLocal)
			if err != nil {
				return &usageError{err}
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			return c.AddSA(sa)
		},
	}
	del := &cobra.Command{
		Use:   "del spi N [dir in|out] [dst B]",
		Short: "Delete an SA by its SPI",
		Long: `Delete an SA: inbound by its SPI (dir in, the default), outbound by its SPI
and its remote end (dir out dst B).`,
		Example: `  spuctl sa del spi 0x5002
  spuctl sa del spi 0x5001 dir out dst 198.18.0.2`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseSAID(args)
			if err != nil {
				return err
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			return c.DelSA(id)
		},
	}
	var o outputFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the SAs, page by page",
		Long: `List spud's SAs in install order, page by page (a million list in the
memory of a page): each SA's SPI, direction, ends, suite, mode, reqid, SPU
and logical SPU, counters and drops by reason, selectors. SAs spud could
not read end the listing with "# N SAs not listed: why" and exit status 1.`,
		Example: `  spuctl sa list
  spuctl sa list -o json | jq -c 'select(.dir == "out")'`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			return listPages(a.out, c.SAPages(0), asJSON, printSA, appendSAJSON)
		},
	}
	o.add(list, "one SA object a line")
	sa.AddCommand(add, del, list)
	return sa
}

// parseSAID reads sa del's keywords.
func parseSAID(args []string) (api.SAID, error) {
	id := api.SAID{Dir: api.In}
	if len(args)%2 != 0 {
		return id, usagef("want keyword-value pairs (spi N [dir in|out] [dst B]), got %d words", len(args))
	}
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "spi":
			n, err := strconv.ParseUint(args[i+1], 0, 32)
			if err != nil {
				return id, usagef("spi %q: want a number (0x5002 or 20482)", args[i+1])
			}
			id.SPI = uint32(n)
		case "dir":
			if args[i+1] != string(api.In) && args[i+1] != string(api.Out) {
				return id, usagef("dir %q: want in or out", args[i+1])
			}
			id.Dir = api.Dir(args[i+1])
		case "dst":
			ad, err := netip.ParseAddr(args[i+1])
			if err != nil {
				return id, usagef("dst %q: want an IP address", args[i+1])
			}
			id.Remote = ad
		default:
			return id, usagef("unknown keyword %q (spi, dir, dst)", args[i])
		}
	}
	if id.SPI == 0 {
		return id, usagef("spi is required")
	}
	return id, nil
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

func (a *app) policyCommand() *cobra.Command {
	policy := &cobra.Command{
		Use:   "policy",
		Short: "Add, delete and list spud's policies",
		Long: `The security policies installed in spud, as ip xfrm policy does for the
kernel's: add one in ip-xfrm syntax, delete one by id, list them.`,
		Example: `  spuctl policy list
  spuctl policy del 3`,
	}
	add := &cobra.Command{
		Use:   "add src P dst P dir out|in|fwd [action allow|block] [tmpl src A dst B proto esp reqid R mode tunnel] [index N] [dev IF] [name NAME]",
		Short: "Install a policy, in the words of ip xfrm policy add",
		Long: `Install a policy in spud. The arguments are what 'ip xfrm policy add' takes
(see docs/dataplane.md); it prints the policy's id and its anchor SPU.`,
		Example: `  spuctl policy add src 198.18.1.0/24 dst 198.18.2.0/24 dir out \
      tmpl src 198.18.0.1 dst 198.18.0.2 proto esp reqid 7 mode tunnel`,
		Args: cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			p, err := xfrmargs.ParsePolicy(args)
			if err != nil {
				return &usageError{err}
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.AddPolicy(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "policy %d on spu %d (logical %d)\n", r.ID, r.SPU, r.Logical)
			return nil
		},
	}
	del := &cobra.Command{
		Use:     "del ID",
		Short:   "Delete a policy by its id",
		Example: `  spuctl policy del 3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			n, err := strconv.ParseUint(args[0], 0, 32)
			if err != nil {
				return usagef("policy id %q: want a number", args[0])
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			return c.DelPolicy(uint32(n))
		},
	}
	var o outputFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the policies, page by page",
		Long: `List spud's policies in install order: id, action, selectors, the tunnel
and the SA in use, SPU and logical SPU, packets matched and acquires raised.`,
		Example: `  spuctl policy list
  spuctl policy list -o json`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			return listPages(a.out, c.PolicyPages(0), asJSON, printPolicy, marshalJSON[api.PolicyState])
		},
	}
	o.add(list, "one policy object a line")
	policy.AddCommand(add, del, list)
	return policy
}

func (a *app) spuCommand() *cobra.Command {
	spu := &cobra.Command{
		Use:   "spu",
		Short: "List spud's SPUs, take one out of service or back (spu alone: spu list)",
		Long: `spud's SPUs (its packet-processing threads): list them with their state,
logical SPUs, tunnels, SAs and busy share; drain one (its logical SPUs and
sockets move to the others), add it back, or make one fail (fault
injection: its loop panics, as a bug would). 'spuctl spu' alone lists.`,
		Example: `  spuctl spu list
  spuctl spu drain 1
  spuctl spu add 1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(_ *cobra.Command, _ []string) error { return a.spuList(false) },
	}
	var o outputFlags
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the SPUs",
		Example: `  spuctl spu list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			return a.spuList(asJSON)
		},
	}
	o.add(list, "one object: the map and every SPU")
	spu.AddCommand(list)
	for _, x := range []struct{ name, short string }{
		{"drain", "Take SPU N out of service: its logical SPUs and sockets move to the others"},
		{"add", "Put SPU N back in service: it takes its share again"},
		{"fail", "Fault injection: SPU N's loop panics, as a bug would"},
	} {
		spu.AddCommand(&cobra.Command{
			Use:     x.name + " N",
			Short:   x.short,
			Example: "  spuctl spu " + x.name + " 1",
			Args:    cobra.ExactArgs(1),
			RunE: func(_ *cobra.Command, args []string) error {
				id, err := strconv.Atoi(args[0])
				if err != nil {
					return usagef("%q is not an SPU number", args[0])
				}
				c, err := a.dialSpud()
				if err != nil {
					return err
				}
				defer c.Close()
				switch x.name {
				case "drain":
					_, err = c.DrainSPU(id)
				case "add":
					_, err = c.AddSPU(id)
				case "fail":
					err = c.FailSPU(id)
				}
				if err != nil {
					return err
				}
				return a.spuList(false)
			},
		})
	}
	return spu
}

func (a *app) spuList(asJSON bool) error {
	c, err := a.dialSpud()
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.SPUs()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(a.out, l)
	}
	w := a.out
	fmt.Fprintf(w, "%d logical SPUs, map generation %d\n", l.Logical, l.MapGen)
	fmt.Fprintf(w, "%-4s %-4s %-8s %8s %8s %8s %6s  %s\n", "spu", "cpu", "state", "logical", "tunnels", "sas", "busy", "logical spus")
	for _, s := range l.SPUs {
		fmt.Fprintf(w, "%-4d %-4d %-8s %8d %8d %8d %5.1f%%  %s\n", s.ID, s.CPU, s.State, len(s.Logical), s.Tunnels, s.SAs, 100*s.Busy, ranges(s.Logical))
	}
	return nil
}

// printJSON writes v as one indented JSON object, the output of the
// commands that show one thing (status, stats, ike-stats...).
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// statusJSON is status's JSON object: spud's hello reply, less what is
// for iked (the anchor key, the map).
type statusJSON struct {
	Server     string          `json:"server"`
	Steering   api.Steering    `json:"steering"`
	Interfaces []api.Interface `json:"interfaces"`
}

func (a *app) statusCommand() *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what spud got from the kernel and the NICs",
		Long: `Show spud's build and kernel, the steering carrier and why, the BPF features
probed, and per interface its side, queues, XDP and AF_XDP modes, carrier,
need_wakeup, tx budget, threaded NAPI and the driver's XDP features.`,
		Example: `  spuctl status
  spuctl status -o json | jq .steering.carrier`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.Hello("spuctl")
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.out, statusJSON{h.Server, h.Steering, h.Interfaces})
			}
			printStatus(a.out, h)
			return nil
		},
	}
	o.add(cmd, "one object")
	return cmd
}

// printStatus shows what spud got from the kernel and the NICs: the
// steering carrier and why, the BPF features probed, and per interface the
// XDP and AF_XDP modes.
func printStatus(w io.Writer, h *api.HelloReply) {
	st := h.Steering
	fmt.Fprintf(w, "%s on kernel %s\n", h.Server, st.Kernel)
	fmt.Fprintf(w, "steering carrier: %s", st.Carrier)
	if st.CarrierReason != "" {
		fmt.Fprintf(w, " (%s)", st.CarrierReason)
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(st.Features))
	for n := range st.Features {
		names = append(names, n)
	}
	sort.Strings(names)
	var feats []string
	for _, n := range names {
		feats = append(feats, n+"="+st.Features[n])
	}
	fmt.Fprintf(w, "bpf features: %s\n", strings.Join(feats, " "))
	fmt.Fprintf(w, "%-10s %-9s %6s %-7s %-8s %-7s %-11s %9s %-8s %s\n", "interface", "side", "queues", "xdp", "af_xdp", "carrier", "need_wakeup", "tx_budget", "threaded", "driver xdp features")
	for _, i := range h.Interfaces {
		side := "wan"
		if i.Protected {
			side = "protected"
		}
		fmt.Fprintf(w, "%-10s %-9s %6d %-7s %-8s %-7s %-11v %9d %-8s %s\n", i.Name, side, i.Queues, i.XDPMode, i.XSKMode, i.Carrier, i.NeedWakeup, i.TxBudget, i.ThreadedNAPI, i.DriverXDP)
	}
}

func (a *app) statsCommand() *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show spud's counters",
		Long: `Show spud's counters: per SPU rx, tx, encap, decap, handoffs, bypass, busy
share, warm SAs (holding their cipher state now) and cooled (times an idle
one dropped it, spud -cipher-idle); then drops by reason, the steering
program's verdicts, link events, refusals for a full table, and each
AF_XDP socket's ring counters.`,
		Example: `  spuctl stats
  spuctl stats -o json | jq .drops`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			c, err := a.dialSpud()
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Stats()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.out, st)
			}
			printStats(a.out, st)
			return nil
		},
	}
	o.add(cmd, "one object")
	return cmd
}

// printStats shows spud's counters: per SPU, then the totals, the
// steering program's and the sockets'.
func printStats(w io.Writer, st *api.Stats) {
	fmt.Fprintf(w, "%-4s %10s %10s %10s %10s %10s %10s %8s %6s %9s %10s\n", "spu", "rx", "tx", "encap", "decap", "handoff>", "handoff<", "bypass", "busy", "warm", "cooled")
	for _, s := range st.SPUs {
		fmt.Fprintf(w, "%-4d %10d %10d %10d %10d %10d %10d %8d %5.1f%% %9d %10d\n", s.ID, s.RxPackets, s.TxPackets, s.Encap, s.Decap, s.HandoffOut, s.HandoffIn, s.Bypass, 100*s.Busy, s.WarmSAs, s.Cooled)
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
		fmt.Fprintf(w, "reassembled esp handed to its anchor: %s\n", strings.Join(frag, " "))
	}
	if len(st.Drops) > 0 {
		fmt.Fprintf(w, "drops: %s\n", kv(st.Drops))
	}
	if len(st.XDP) > 0 {
		fmt.Fprintf(w, "xdp (carrier %s): %s\n", st.Carrier, kv(st.XDP))
	}
	if len(st.Links) > 0 {
		fmt.Fprintf(w, "links: %s\n", kv(st.Links))
	}
	if len(st.Refused) > 0 {
		fmt.Fprintf(w, "refused: %s\n", kv(st.Refused))
	}
	for _, s := range st.Sockets {
		fmt.Fprintf(w, "socket %s/%d (spu %d): rx %d tx %d rx_dropped %d fill_empty %d tx_full %d\n",
			s.Interface, s.Queue, s.SPU, s.Rx, s.Tx, s.RxDropped, s.FillEmpty, s.TxFull)
	}
}
