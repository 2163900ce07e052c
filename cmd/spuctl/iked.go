package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	ikestats "github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/iked/ikectl"
)

// ikeTarget is what the iked commands name: a connection and a child, by
// position (CONN [CHILD]) or by flag (--ike, --child), or IKE and Child
// SAs by unique id.
type ikeTarget struct {
	ike, child      string
	ikeID, childID  uint
	timeout         time.Duration
	withIDs, withCh bool
}

// add adds the target's flags to cmd.
func (t *ikeTarget) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.ike, "ike", "", "the connection (instead of CONN)")
	if t.withCh {
		cmd.Flags().StringVar(&t.child, "child", "", "the child (instead of CHILD)")
	}
	if t.withIDs {
		cmd.Flags().UintVar(&t.ikeID, "ike-id", 0, "an IKE SA by its unique id (list-sas: #N)")
		cmd.Flags().UintVar(&t.childID, "child-id", 0, "a Child SA by its unique id")
	}
}

// take fills the target from the positional CONN [CHILD]; a flag given
// wins.
func (t *ikeTarget) take(args []string) {
	if len(args) > 0 && t.ike == "" {
		t.ike = args[0]
	}
	if len(args) > 1 && t.child == "" {
		t.child = args[1]
	}
}

// addTimeout adds --timeout: how long the command waits for iked.
func addTimeout(cmd *cobra.Command, d *time.Duration, what string) {
	cmd.Flags().DurationVar(d, "timeout", 30*time.Second, what)
}

// ikedCommands are the commands that talk to iked's control socket.
func (a *app) ikedCommands() []*cobra.Command {
	cmds := []*cobra.Command{a.listConnsCommand(), a.listSAsCommand(), a.initiateCommand(), a.terminateCommand(), a.rekeyCommand(),
		a.loadInitiateCommand(), a.loadStatusCommand(), a.reloadCommand(), a.ikeStatsCommand(), a.monitorCommand()}
	for _, c := range cmds {
		if c.ValidArgsFunction == nil {
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
	}
	return cmds
}

// ikedCall dials iked and runs f with the connection, each call bounded by
// timeout and 5 s more.
func (a *app) ikedCall(timeout time.Duration, f func(*ikectl.Client) error) error {
	c, err := a.dialIked()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(timeout + 5*time.Second)
	return f(c)
}

// completeConns completes a connection name (and then a child's) from
// iked's configuration, when iked answers.
func (a *app) completeConns(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	a.ikedCall(2*time.Second, func(c *ikectl.Client) error {
		conns, err := c.Conns()
		for _, cn := range conns {
			if len(args) == 0 {
				names = append(names, cn.Name)
			} else if cn.Name == args[0] {
				for _, ch := range cn.Children {
					names = append(names, ch.Name)
				}
			}
		}
		return err
	})
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) listConnsCommand() *cobra.Command {
	var o outputFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "list-conns",
		Short: "List iked's configured connections",
		Long: `List the connections iked loaded, as swanctl --list-conns does: the ends,
proposals, authentication and identities, and each child's traffic
selectors, actions and rekey time (trap installed: its policy waits for
traffic).`,
		Example: `  spuctl list-conns
  spuctl list-conns -o json | jq -r .name`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			return a.ikedCall(timeout, func(c *ikectl.Client) error {
				conns, err := c.Conns()
				if err != nil {
					return err
				}
				if asJSON {
					return printJSONLines(a.out, conns)
				}
				printConns(a.out, conns)
				return nil
			})
		},
	}
	o.add(cmd, "one connection object a line")
	addTimeout(cmd, &timeout, "how long to wait for iked")
	return cmd
}

// printJSONLines writes each of l as one JSON object a line.
func printJSONLines[T any](w io.Writer, l []T) error {
	bw := bufio.NewWriter(w)
	for i := range l {
		b, err := appendMarshal(bw.AvailableBuffer(), l[i])
		if err != nil {
			return err
		}
		bw.Write(append(b, '\n'))
	}
	return bw.Flush()
}

func (a *app) listSAsCommand() *cobra.Command {
	var o outputFlags
	t := ikeTarget{}
	cmd := &cobra.Command{
		Use:   "list-sas [CONN]",
		Short: "List the IKE SAs and their Child SAs, page by page",
		Long: `List iked's IKE SAs (all, or CONN's) in unique id order, page by page, as
swanctl --list-sas does: SPIs, ends and identities, algorithms, age and
time to rekey, worker and anchor SPU; each Child SA's SPIs, bytes and
packets, selectors, time to rekey and expiry.`,
		Example: `  spuctl list-sas
  spuctl list-sas site-b -o json | jq .children`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeConns,
		RunE: func(_ *cobra.Command, args []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			t.take(args)
			return a.ikedCall(t.timeout, func(c *ikectl.Client) error {
				// Page by page, so that a million IKE SAs print as they
				// come; 64 KiB a write (bufio's default 4 KiB was a write
				// every ten IKE SAs, 100,000 writes for a million).
				out := bufio.NewWriterSize(a.out, 64<<10)
				return c.SAPages(func(sas []ikectl.IKESA) error {
					if asJSON {
						if err := printSAsJSON(out, sas, t.ike); err != nil {
							return err
						}
					} else {
						printSAs(out, sas, t.ike)
					}
					return out.Flush()
				})
			})
		},
	}
	o.add(cmd, "one IKE SA object a line, its Child SAs in it")
	t.add(cmd)
	addTimeout(cmd, &t.timeout, "how long to wait for each page")
	return cmd
}

func (a *app) initiateCommand() *cobra.Command {
	t := ikeTarget{withCh: true}
	cmd := &cobra.Command{
		Use:   "initiate CONN [CHILD]",
		Short: "Bring up a connection (or one child) and wait for the outcome",
		Long: `Ask iked to bring up CONN: an IKE SA (or the one up already) and its
children's Child SAs, or only CHILD's; wait up to --timeout for the outcome.`,
		Example: `  spuctl initiate site-b
  spuctl initiate site-b lan --timeout 60s`,
		Args:              cobra.MaximumNArgs(2),
		ValidArgsFunction: a.completeConns,
		RunE: func(_ *cobra.Command, args []string) error {
			t.take(args)
			if t.ike == "" {
				return usagef("name the connection (initiate CONN [CHILD])")
			}
			return a.ikedCall(t.timeout, func(c *ikectl.Client) error {
				r, err := c.Initiate(ikectl.Initiate{Conn: t.ike, Child: t.child, Timeout: t.timeout})
				if err != nil {
					return fmt.Errorf("initiate %s: %w", t.ike, err)
				}
				fmt.Fprintln(a.out, r.Message)
				return nil
			})
		},
	}
	t.add(cmd)
	addTimeout(cmd, &t.timeout, "how long to wait for the outcome")
	return cmd
}

func (a *app) terminateCommand() *cobra.Command {
	t := ikeTarget{withCh: true, withIDs: true}
	cmd := &cobra.Command{
		Use:   "terminate CONN [CHILD]",
		Short: "Delete a connection's IKE SAs (or only Child SAs) and wait for it",
		Long: `Ask iked to delete CONN's IKE SAs (or the one --ike-id names) with their
Child SAs, or only CHILD's Child SAs (or the one --child-id names); it
prints how many matched.`,
		Example: `  spuctl terminate site-b
  spuctl terminate --ike-id 42
  spuctl terminate site-b lan`,
		Args:              cobra.MaximumNArgs(2),
		ValidArgsFunction: a.completeConns,
		RunE: func(_ *cobra.Command, args []string) error {
			t.take(args)
			if t.ike == "" && t.ikeID == 0 {
				return usagef("name the connection or --ike-id (terminate CONN [CHILD])")
			}
			return a.ikedCall(t.timeout, func(c *ikectl.Client) error {
				r, err := c.Terminate(ikectl.Terminate{Conn: t.ike, IKEID: uint32(t.ikeID), Child: t.child, ChildID: uint32(t.childID), Timeout: t.timeout})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "%s (%d)\n", r.Message, r.Matched)
				return nil
			})
		},
	}
	t.add(cmd)
	addTimeout(cmd, &t.timeout, "how long to wait for the outcome")
	return cmd
}

func (a *app) rekeyCommand() *cobra.Command {
	t := ikeTarget{withCh: true, withIDs: true}
	var ikeSA bool
	cmd := &cobra.Command{
		Use:   "rekey CONN [CHILD]",
		Short: "Rekey a connection's Child SAs (or its IKE SA) now",
		Long: `Ask iked to rekey CONN's Child SAs (or CHILD's, or the one --child-id
names, or those of the IKE SA --ike-id names) now; with --ike-sa the IKE
SAs instead. It returns once the rekeys are started.`,
		Example: `  spuctl rekey site-b
  spuctl rekey site-b lan
  spuctl rekey site-b --ike-sa`,
		Args:              cobra.MaximumNArgs(2),
		ValidArgsFunction: a.completeConns,
		RunE: func(_ *cobra.Command, args []string) error {
			t.take(args)
			if t.ike == "" && t.ikeID == 0 {
				return usagef("name the connection or --ike-id (rekey CONN [CHILD])")
			}
			return a.ikedCall(t.timeout, func(c *ikectl.Client) error {
				r, err := c.Rekey(ikectl.Rekey{Conn: t.ike, IKEID: uint32(t.ikeID), Child: t.child, ChildID: uint32(t.childID), IKE: ikeSA})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "%s (%d)\n", r.Message, r.Matched)
				return nil
			})
		},
	}
	t.add(cmd)
	cmd.Flags().BoolVar(&ikeSA, "ike-sa", false, "rekey the IKE SA rather than its Child SAs")
	addTimeout(cmd, &t.timeout, "how long to wait for iked")
	return cmd
}

func (a *app) loadInitiateCommand() *cobra.Command {
	t := ikeTarget{}
	var l ikectl.Load
	cmd := &cobra.Command{
		Use:   "load-initiate CONN --count N",
		Short: "Start a load run: N new IKE SAs of a connection, a window of them at a time",
		Long: `Ask iked for --count new IKE SAs of CONN, each with its first child, at most
--window not yet established at a time, never reusing an IKE SA (a load
initiator, as strongSwan's load-tester plugin, for benchmarks and
testbeds). It waits for the run to end and prints its outcome; with
--background it returns once started (see load-status).`,
		Example: `  spuctl load-initiate site-b --count 2000 --window 64
  spuctl load-initiate site-b --count 100000 --background --load-timeout 10m
  spuctl load-status site-b`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeConns,
		RunE: func(_ *cobra.Command, args []string) error {
			t.take(args)
			if t.ike == "" || l.Count <= 0 {
				return usagef("name the connection and a count (load-initiate CONN --count N [--window W])")
			}
			l.Conn = t.ike
			// The run ends by itself: wait as long as iked may (its run
			// timeout and ten minutes for the IKE SAs in flight), unless
			// told otherwise.
			wait := l.Timeout + 11*time.Minute - 5*time.Second
			if t.timeout > 0 {
				wait = t.timeout
			}
			return a.ikedCall(wait, func(c *ikectl.Client) error {
				r, err := c.Load(l)
				if err != nil {
					return fmt.Errorf("load-initiate %s: %w", t.ike, err)
				}
				printLoad(a.out, r)
				return nil
			})
		},
	}
	t.add(cmd)
	f := cmd.Flags()
	f.IntVar(&l.Count, "count", 0, "how many new IKE SAs (required)")
	f.IntVar(&l.Window, "window", 16, "IKE SAs in flight at most")
	f.IntVar(&l.MaxFailures, "max-failures", 0, "stop after that many failures (0: no budget)")
	f.BoolVar(&l.Background, "background", false, "return once started (see load-status)")
	f.StringVar(&l.Identity, "identity", "", "each IKE SA's local identity, %d its number (load-tester's initiator_id; PSK only)")
	f.DurationVar(&l.Timeout, "load-timeout", 0, "stop starting new IKE SAs after this (0: none)")
	f.DurationVar(&t.timeout, "timeout", 0, "how long to wait for the run's outcome (0: as long as iked may, --load-timeout and 11 minutes)")
	cmd.MarkFlagRequired("count")
	return cmd
}

func (a *app) loadStatusCommand() *cobra.Command {
	var o outputFlags
	t := ikeTarget{}
	cmd := &cobra.Command{
		Use:   "load-status CONN",
		Short: "Show the progress of a connection's current or last load run",
		Example: `  spuctl load-status site-b
  spuctl load-status site-b -o json | jq .established`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeConns,
		RunE: func(_ *cobra.Command, args []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			t.take(args)
			if t.ike == "" {
				return usagef("name the connection (load-status CONN)")
			}
			return a.ikedCall(t.timeout, func(c *ikectl.Client) error {
				r, err := c.LoadStatus(t.ike)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(a.out, r)
				}
				printLoad(a.out, r)
				return nil
			})
		},
	}
	o.add(cmd, "one object")
	t.add(cmd)
	addTimeout(cmd, &t.timeout, "how long to wait for iked")
	return cmd
}

func (a *app) reloadCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Reload iked's configuration (as SIGHUP does)",
		Long: `Ask iked to read its configuration again: connections that did not change
keep their SAs; added ones start, removed ones are terminated, changed ones
restart. It prints what was added, removed, changed and left.`,
		Example: `  spuctl reload`,
		Args:    cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return a.ikedCall(timeout, func(c *ikectl.Client) error {
				r, err := c.Reload()
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "reloaded: added %v, removed %v, changed %v, %d unchanged\n", r.Added, r.Removed, r.Changed, len(r.Unchanged))
				return nil
			})
		},
	}
	addTimeout(cmd, &timeout, "how long to wait for iked")
	return cmd
}

func (a *app) ikeStatsCommand() *cobra.Command {
	var o outputFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ike-stats",
		Short: "Show iked's counters",
		Long: `Show iked's counters: IKE SAs, half-open ones and those moved between
workers; per worker its IKE SAs, datagrams, those handed to it, time
blocked on spud and SA API calls in flight; exchanges, retransmissions and
the other counters; failures by reason; SO_REUSEPORT steering.`,
		Example: `  spuctl ike-stats
  spuctl ike-stats -o json | jq .failures`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			return a.ikedCall(timeout, func(c *ikectl.Client) error {
				st, err := c.Stats()
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(a.out, st)
				}
				printIKEStats(a.out, st)
				return nil
			})
		},
	}
	o.add(cmd, "one object")
	addTimeout(cmd, &timeout, "how long to wait for iked")
	return cmd
}

func printIKEStats(w io.Writer, st *ikectl.Stats) {
	fmt.Fprintf(w, "ike sas %d, half-open %d, moved between workers %d\n", st.IKESAs, st.HalfOpen, st.Migrations)
	for _, wk := range st.Workers {
		fmt.Fprintf(w, "worker %d (spu %d): %d ike sas, %d datagrams on its sockets, %d handed to it, %v blocked on spud, %d calls not waited for in flight\n",
			wk.ID, wk.SPU, wk.IKESAs, wk.Datagrams, wk.HandedIn, time.Duration(wk.SpudWaitNS).Round(time.Millisecond), wk.InstallsInFlight)
	}
	for _, k := range ikestats.Names(st.Counters) {
		fmt.Fprintf(w, "%-24s %d\n", k, st.Counters[k])
	}
	if len(st.Failures) > 0 {
		fmt.Fprintln(w, "failures:")
		for _, k := range ikestats.Names(st.Failures) {
			fmt.Fprintf(w, "  %-22s %d\n", k, st.Failures[k])
		}
	}
	if len(st.Reuseport) > 0 {
		fmt.Fprintf(w, "reuseport: %s\n", kv(st.Reuseport))
	}
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
