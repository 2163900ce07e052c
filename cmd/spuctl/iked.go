package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
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
	loadTimeout := fs.Duration("load-timeout", 0, "load-initiate: stop starting new IKE SAs after this (0: none)")
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
			MaxFailures: *maxFail, Background: *background})
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
		// Page by page, so that a million IKE SAs print as they come.
		out := bufio.NewWriter(os.Stdout)
		err := c.SAPages(func(sas []ikectl.IKESA) error {
			printSAs(out, sas, *ike)
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
			fmt.Printf("worker %d (spu %d): %d ike sas, %d datagrams on its sockets, %d handed to it\n",
				w.ID, w.SPU, w.IKESAs, w.Datagrams, w.HandedIn)
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

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

// printSAs prints IKE and Child SAs the way swanctl --list-sas does.
func printSAs(w io.Writer, sas []ikectl.IKESA, only string) {
	for _, s := range sas {
		if only != "" && s.Conn != only {
			continue
		}
		mi, mr := "", ""
		if s.Initiator {
			mi = "*"
		} else {
			mr = "*"
		}
		fmt.Fprintf(w, "%s: #%d, %s, IKEv2, %s_i%s %s_r%s\n", s.Conn, s.UniqueID, s.State, s.SPIi, mi, s.SPIr, mr)
		nat := func(b bool) string {
			if b {
				return " (behind NAT)"
			}
			return ""
		}
		auth := func(a string) string {
			if a == "" {
				return ""
			}
			return ", " + a
		}
		fmt.Fprintf(w, "  local  '%s' @ %s[%d]%s%s\n", s.LocalID, s.Local.Addr(), s.Local.Port(), nat(s.NATLocal), auth(s.AuthLocal))
		fmt.Fprintf(w, "  remote '%s' @ %s[%d]%s%s\n", s.RemoteID, s.Remote.Addr(), s.Remote.Port(), nat(s.NATRemote), auth(s.AuthRemote))
		if s.Proposal != "" {
			fmt.Fprintf(w, "  %s\n", strings.TrimPrefix(s.Proposal, "IKE:"))
		}
		fmt.Fprintf(w, "  established %s ago", ago(s.Established))
		if s.RekeyIn > 0 {
			fmt.Fprintf(w, ", rekeying in %s", s.RekeyIn)
		}
		fmt.Fprintf(w, ", worker %d, anchor spu %d (logical %d), message ids %d/%d\n", s.Worker, s.SPU, s.Logical, s.Counters.MsgIDOut, s.Counters.MsgIDIn)
		for _, c := range s.Children {
			mode := "TUNNEL"
			if c.Encap {
				mode = "TUNNEL-in-UDP"
			}
			fmt.Fprintf(w, "  %s: #%d, reqid %d, %s, %s, %s\n", c.Name, c.UniqueID, c.ReqID, c.State, mode, c.Proposal)
			fmt.Fprintf(w, "    installed %s ago", ago(c.Installed))
			if c.RekeyIn > 0 {
				fmt.Fprintf(w, ", rekeying in %s", c.RekeyIn)
			}
			if c.ExpireIn > 0 {
				fmt.Fprintf(w, ", expires in %s", c.ExpireIn)
			}
			fmt.Fprintf(w, ", spu %d\n", c.SPU)
			fmt.Fprintf(w, "    in  %08x, %8d bytes, %6d packets\n", c.SPIIn, c.BytesIn, c.PacketsIn)
			fmt.Fprintf(w, "    out %08x, %8d bytes, %6d packets\n", c.SPIOut, c.BytesOut, c.PktsOut)
			fmt.Fprintf(w, "    local  %s\n", strings.Join(c.LocalTS, " "))
			fmt.Fprintf(w, "    remote %s\n", strings.Join(c.RemoteTS, " "))
		}
	}
}
