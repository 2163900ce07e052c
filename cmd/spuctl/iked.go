package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	ikestats "github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/iked/ikectl"
)

// ikeCmd runs the commands that talk to iked.
func ikeCmd(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	ike := fs.String("ike", "", "connection name")
	child := fs.String("child", "", "child name")
	ikeID := fs.Uint("ike-id", 0, "IKE SA unique id")
	childID := fs.Uint("child-id", 0, "Child SA unique id")
	rekeyIKE := fs.Bool("ike-sa", false, "rekey: the IKE SA rather than its Child SAs")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the outcome")
	count := fs.Int("count", 0, "load-initiate: how many new IKE SAs")
	window := fs.Int("window", 16, "load-initiate: IKE SAs in flight at most")
	maxFail := fs.Int("max-failures", 0, "load-initiate: stop after that many failures (0: no budget)")
	background := fs.Bool("background", false, "load-initiate: return once started (see load-status)")
	loadID := fs.String("identity", "", "load-initiate: each IKE SA's local identity, %d its number (load-tester's initiator_id; PSK only)")
	loadTimeout := fs.Duration("load-timeout", 0, "load-initiate: stop starting new IKE SAs after this (0: none)")
	asJSON := fs.Bool("json", false, "list-sas: one JSON object an IKE SA, a line")
	fs.SetOutput(io.Discard)
	// Positional CONN [CHILD] first, flags after, or flags only.
	var pos []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos = append(pos, args[0])
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	pos = append(pos, fs.Args()...)
	if len(pos) > 0 && *ike == "" {
		*ike = pos[0]
	}
	if len(pos) > 1 && *child == "" {
		*child = pos[1]
	}
	c, err := ikectl.Dial(*ikedSocket)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(*timeout + 5*time.Second)
	switch cmd {
	case "load-initiate":
		if *ike == "" || *count <= 0 {
			return fmt.Errorf("load-initiate: name the connection and a count (load-initiate CONN -count N [-window W])")
		}
		// The run ends by itself: wait as long as iked may (its run timeout
		// and ten minutes for the IKE SAs in flight).
		c.SetTimeout(*loadTimeout + 11*time.Minute)
		r, err := c.Load(ikectl.Load{Conn: *ike, Count: *count, Window: *window, Timeout: *loadTimeout,
			MaxFailures: *maxFail, Background: *background, Identity: *loadID})
		if err != nil {
			return fmt.Errorf("load-initiate %s: %w", *ike, err)
		}
		printLoad(os.Stdout, r)
	case "load-status":
		if *ike == "" {
			return fmt.Errorf("load-status: name the connection")
		}
		r, err := c.LoadStatus(*ike)
		if err != nil {
			return err
		}
		printLoad(os.Stdout, r)
	case "list-conns":
		conns, err := c.Conns()
		if err != nil {
			return err
		}
		printConns(os.Stdout, conns)
	case "list-sas":
		// Page by page, so that a million IKE SAs print as they come;
		// 64 KiB a write (bufio's default 4 KiB was a write every ten
		// IKE SAs, 100,000 writes for a million).
		out := bufio.NewWriterSize(os.Stdout, 64<<10)
		err := c.SAPages(func(sas []ikectl.IKESA) error {
			if *asJSON {
				if err := printSAsJSON(out, sas, *ike); err != nil {
					return err
				}
			} else {
				printSAs(out, sas, *ike)
			}
			return out.Flush()
		})
		if err != nil {
			return err
		}
	case "initiate":
		if *ike == "" {
			return fmt.Errorf("initiate: name the connection (initiate CONN [CHILD])")
		}
		r, err := c.Initiate(ikectl.Initiate{Conn: *ike, Child: *child, Timeout: *timeout})
		if err != nil {
			return fmt.Errorf("initiate %s: %w", *ike, err)
		}
		fmt.Println(r.Message)
	case "terminate":
		if *ike == "" && *ikeID == 0 {
			return fmt.Errorf("terminate: name the connection or --ike-id")
		}
		r, err := c.Terminate(ikectl.Terminate{Conn: *ike, IKEID: uint32(*ikeID), Child: *child, ChildID: uint32(*childID), Timeout: *timeout})
		if err != nil {
			return err
		}
		fmt.Printf("%s (%d)\n", r.Message, r.Matched)
	case "rekey":
		if *ike == "" && *ikeID == 0 {
			return fmt.Errorf("rekey: name the connection or --ike-id")
		}
		r, err := c.Rekey(ikectl.Rekey{Conn: *ike, IKEID: uint32(*ikeID), Child: *child, ChildID: uint32(*childID), IKE: *rekeyIKE})
		if err != nil {
			return err
		}
		fmt.Printf("%s (%d)\n", r.Message, r.Matched)
	case "reload":
		r, err := c.Reload()
		if err != nil {
			return err
		}
		fmt.Printf("reloaded: added %v, removed %v, changed %v, %d unchanged\n", r.Added, r.Removed, r.Changed, len(r.Unchanged))
	case "ike-stats":
		st, err := c.Stats()
		if err != nil {
			return err
		}
		fmt.Printf("ike sas %d, half-open %d, moved between workers %d\n", st.IKESAs, st.HalfOpen, st.Migrations)
		for _, w := range st.Workers {
			fmt.Printf("worker %d (spu %d): %d ike sas, %d datagrams on its sockets, %d handed to it, %v blocked on spud, %d calls not waited for in flight\n",
				w.ID, w.SPU, w.IKESAs, w.Datagrams, w.HandedIn, time.Duration(w.SpudWaitNS).Round(time.Millisecond), w.InstallsInFlight)
		}
		for _, k := range ikestats.Names(st.Counters) {
			fmt.Printf("%-24s %d\n", k, st.Counters[k])
		}
		if len(st.Failures) > 0 {
			fmt.Println("failures:")
			for _, k := range ikestats.Names(st.Failures) {
				fmt.Printf("  %-22s %d\n", k, st.Failures[k])
			}
		}
		if len(st.Reuseport) > 0 {
			fmt.Printf("reuseport: %s\n", kv(st.Reuseport))
		}
	}
	return nil
}

func printLoad(w io.Writer, r *ikectl.LoadResult) {
	state := "running"
	if r.Done {
		state = "done"
	}
	fmt.Fprintf(w, "load %s on worker %d: %s, %d of %d started (window %d), %d established, %d failed, %s, %.1f IKE SAs/s\n",
		r.Conn, r.Worker, state, r.Started, r.Count, r.Window, r.Established, r.Failed, r.Elapsed.Round(time.Millisecond), r.Rate)
	if r.Stopped != "" {
		fmt.Fprintf(w, "  stopped early: %s\n", r.Stopped)
	}
	if r.FirstFailure != "" {
		fmt.Fprintf(w, "  first failure: %s\n", r.FirstFailure)
	}
}

func printConns(w io.Writer, conns []ikectl.Conn) {
	for _, c := range conns {
		fmt.Fprintf(w, "%s: IKEv2, %s...%s", c.Name, strings.Join(orAny(c.LocalAddrs), ","), strings.Join(orAny(c.RemoteAddrs), ","))
		if c.DPDDelay != "" {
			fmt.Fprintf(w, ", dpd %s", c.DPDDelay)
		}
		if c.Encap {
			fmt.Fprintf(w, ", encap")
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  proposals: %s\n", strings.Join(c.Proposals, ","))
		fmt.Fprintf(w, "  local %s authentication: %s\n", c.LocalAuth, c.LocalID)
		fmt.Fprintf(w, "  remote %s authentication: %s\n", c.RemoteAuth, c.RemoteID)
		for _, ch := range c.Children {
			trap := ""
			if ch.Trap {
				trap = ", trap installed"
			}
			fmt.Fprintf(w, "  %s: TUNNEL, start %s, dpd %s, close %s, rekey %s%s\n", ch.Name, ch.StartAction, ch.DPDAction, ch.CloseAction, ch.RekeyTime, trap)
			fmt.Fprintf(w, "    esp proposals: %s\n", strings.Join(ch.ESPProposals, ","))
			fmt.Fprintf(w, "    local:  %s\n", strings.Join(ch.LocalTS, " "))
			fmt.Fprintf(w, "    remote: %s\n", strings.Join(ch.RemoteTS, " "))
		}
	}
}

func orAny(l []string) []string {
	if len(l) == 0 {
		return []string{"%any"}
	}
	return l
}

// appendAgo appends how long ago t was, in seconds, or "-" for none.
func appendAgo(b []byte, t, now time.Time) []byte {
	if t.IsZero() {
		return append(b, '-')
	}
	return append(b, now.Sub(t).Round(time.Second).String()...)
}

// printSAs prints IKE and Child SAs the way swanctl --list-sas does; with
// strconv's appends, not fmt's, since a listing of a million IKE SAs
// spends its time here (TestPrintIKESAsAsFmt: the same bytes as fmt).
func printSAs(w *bufio.Writer, sas []ikectl.IKESA, only string) {
	now := time.Now()
	for i := range sas {
		if only != "" && sas[i].Conn != only {
			continue
		}
		w.Write(appendIKESA(w.AvailableBuffer(), &sas[i], now))
	}
}

// printSAsJSON prints each IKE SA as one JSON object a line, as
// json.Marshal writes it (appendIKESAJSON).
func printSAsJSON(w *bufio.Writer, sas []ikectl.IKESA, only string) error {
	for i := range sas {
		if only != "" && sas[i].Conn != only {
			continue
		}
		b, err := appendIKESAJSON(w.AvailableBuffer(), &sas[i])
		if err != nil {
			return err
		}
		w.Write(append(b, '\n'))
	}
	return nil
}

// appendIKESA appends an IKE SA's lines and its Child SAs'.
func appendIKESA(b []byte, s *ikectl.IKESA, now time.Time) []byte {
	b = append(b, s.Conn...)
	b = append(b, ": #"...)
	b = strconv.AppendUint(b, uint64(s.UniqueID), 10)
	b = append(b, ", "...)
	b = append(b, s.State...)
	b = append(b, ", IKEv2, "...)
	b = append(b, s.SPIi...)
	b = append(b, "_i"...)
	if s.Initiator {
		b = append(b, '*')
	}
	b = append(b, ' ')
	b = append(b, s.SPIr...)
	b = append(b, "_r"...)
	if !s.Initiator {
		b = append(b, '*')
	}
	b = append(b, '\n')
	b = appendEnd(b, "  local  '", s.LocalID, s.Local, s.NATLocal, s.AuthLocal)
	b = appendEnd(b, "  remote '", s.RemoteID, s.Remote, s.NATRemote, s.AuthRemote)
	if s.Proposal != "" {
		b = append(b, "  "...)
		b = append(b, strings.TrimPrefix(s.Proposal, "IKE:")...)
		b = append(b, '\n')
	}
	b = append(b, "  established "...)
	b = appendAgo(b, s.Established, now)
	b = append(b, " ago"...)
	if s.RekeyIn > 0 {
		b = append(b, ", rekeying in "...)
		b = append(b, s.RekeyIn.String()...)
	}
	b = append(b, ", worker "...)
	b = strconv.AppendInt(b, int64(s.Worker), 10)
	b = append(b, ", anchor spu "...)
	b = strconv.AppendInt(b, int64(s.SPU), 10)
	b = append(b, " (logical "...)
	b = strconv.AppendInt(b, int64(s.Logical), 10)
	b = append(b, "), message ids "...)
	b = strconv.AppendUint(b, uint64(s.Counters.MsgIDOut), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(s.Counters.MsgIDIn), 10)
	b = append(b, '\n')
	for i := range s.Children {
		b = appendChildSA(b, &s.Children[i], now)
	}
	return b
}

// appendEnd appends one end's line: "  local  'id' @ addr[port]", behind
// NAT or not, and how it authenticated.
func appendEnd(b []byte, prefix, id string, ap netip.AddrPort, nat bool, auth string) []byte {
	b = append(b, prefix...)
	b = append(b, id...)
	b = append(b, "' @ "...)
	b = appendAddr(b, ap.Addr())
	b = append(b, '[')
	b = strconv.AppendUint(b, uint64(ap.Port()), 10)
	b = append(b, ']')
	if nat {
		b = append(b, " (behind NAT)"...)
	}
	if auth != "" {
		b = append(b, ", "...)
		b = append(b, auth...)
	}
	return append(b, '\n')
}

// appendAddr appends a as its String does: AppendTo writes nothing for
// the zero address, which String calls "invalid IP".
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, a.String()...)
	}
	return a.AppendTo(b)
}

func appendChildSA(b []byte, c *ikectl.ChildSA, now time.Time) []byte {
	b = append(b, "  "...)
	b = append(b, c.Name...)
	b = append(b, ": #"...)
	b = strconv.AppendUint(b, uint64(c.UniqueID), 10)
	b = append(b, ", reqid "...)
	b = strconv.AppendUint(b, uint64(c.ReqID), 10)
	b = append(b, ", "...)
	b = append(b, c.State...)
	if c.Encap {
		b = append(b, ", TUNNEL-in-UDP, "...)
	} else {
		b = append(b, ", TUNNEL, "...)
	}
	b = append(b, c.Proposal...)
	b = append(b, "\n    installed "...)
	b = appendAgo(b, c.Installed, now)
	b = append(b, " ago"...)
	if c.RekeyIn > 0 {
		b = append(b, ", rekeying in "...)
		b = append(b, c.RekeyIn.String()...)
	}
	if c.ExpireIn > 0 {
		b = append(b, ", expires in "...)
		b = append(b, c.ExpireIn.String()...)
	}
	b = append(b, ", spu "...)
	b = strconv.AppendInt(b, int64(c.SPU), 10)
	b = appendDir(b, "\n    in  ", c.SPIIn, c.BytesIn, c.PacketsIn)
	b = appendDir(b, "    out ", c.SPIOut, c.BytesOut, c.PktsOut)
	b = append(b, "    local  "...)
	b = appendJoined(b, c.LocalTS)
	b = append(b, "\n    remote "...)
	b = appendJoined(b, c.RemoteTS)
	return append(b, '\n')
}

// appendDir appends a direction's line: its SPI and counters, in columns
// of 8 and 6.
func appendDir(b []byte, prefix string, spi uint32, bytes, packets uint64) []byte {
	b = append(b, prefix...)
	b = appendHex8(b, spi)
	b = append(b, ", "...)
	b = appendPadded(b, bytes, 8)
	b = append(b, " bytes, "...)
	b = appendPadded(b, packets, 6)
	return append(b, " packets\n"...)
}

// appendPadded appends v right-aligned in width columns, as %*d.
func appendPadded(b []byte, v uint64, width int) []byte {
	var d [20]byte
	digits := strconv.AppendUint(d[:0], v, 10)
	for n := len(digits); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, digits...)
}

func appendJoined(b []byte, l []string) []byte {
	for i, s := range l {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
	}
	return b
}
