package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spugate/spugate/control/vici"
)

// defaultVICISocket is where iked serves VICI unless told otherwise
// (iked.DefaultVICI; spuctl does not link the daemon to know it, a test
// checks they agree).
const defaultVICISocket = "/run/spugate/vici.sock"

// monitorEvents are the VICI events monitor always registers for: the
// ones swanctl --monitor-sa shows.
var monitorEvents = []string{vici.EvIKEUpDown, vici.EvChildUpDown, vici.EvIKERekey, vici.EvChildRekey}

// registerTimeout bounds connecting and registering, before the stream.
const registerTimeout = 10 * time.Second

// monitorEvent is one line of spuctl monitor -o json (its schema is in
// docs/operations.md, "spuctl monitor -o json").
type monitorEvent struct {
	// Time is when spuctl received the event: VICI events carry none.
	Time time.Time `json:"time"`
	// Event is ike-up, ike-down, child-up, child-down, ike-rekey,
	// child-rekey or log.
	Event string `json:"event"`
	// Conn is the IKE SA's connection.
	Conn string `json:"conn,omitempty"`
	// IKE is the IKE SA (for ike-rekey the new one).
	IKE *monitorIKE `json:"ike,omitempty"`
	// OldIKE is the IKE SA an ike-rekey replaced.
	OldIKE *monitorOld `json:"old_ike,omitempty"`
	// Child is the Child SA (for child-rekey the new one).
	Child *monitorChild `json:"child,omitempty"`
	// OldChild is the Child SA a child-rekey replaced.
	OldChild *monitorOld `json:"old_child,omitempty"`
	// Log is a log event's line.
	Log *monitorLog `json:"log,omitempty"`
}

// monitorIKE is an IKE SA as its events show it.
type monitorIKE struct {
	UniqueID  uint32 `json:"unique_id"`
	State     string `json:"state"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	LocalID   string `json:"local_id"`
	RemoteID  string `json:"remote_id"`
	Initiator bool   `json:"initiator"`
	SPIi      string `json:"spi_i"`
	SPIr      string `json:"spi_r"`
	SPU       int    `json:"spu"`
	Logical   int    `json:"logical"`
}

// monitorChild is a Child SA as its events show it.
type monitorChild struct {
	Name     string   `json:"name"`
	UniqueID uint32   `json:"unique_id"`
	ReqID    uint32   `json:"reqid"`
	State    string   `json:"state"`
	SPIIn    uint32   `json:"spi_in"`
	SPIOut   uint32   `json:"spi_out"`
	Encap    bool     `json:"encap,omitempty"`
	LocalTS  []string `json:"local_ts"`
	RemoteTS []string `json:"remote_ts"`
	SPU      *int     `json:"spu,omitempty"`
}

// monitorOld is what a rekey event tells of the SA replaced: its id and
// SPIs (IKE: spi_i/spi_r; child: spi_in/spi_out).
type monitorOld struct {
	UniqueID uint32  `json:"unique_id"`
	SPIi     string  `json:"spi_i,omitempty"`
	SPIr     string  `json:"spi_r,omitempty"`
	SPIIn    *uint32 `json:"spi_in,omitempty"`
	SPIOut   *uint32 `json:"spi_out,omitempty"`
}

// monitorLog is a log event: iked's line at charon's level (0 warnings
// and errors, 1 info) from its worker.
type monitorLog struct {
	Level  int    `json:"level"`
	Thread int    `json:"thread"`
	Msg    string `json:"msg"`
	// IKEID is the IKE SA the line names, if one.
	IKEID uint32 `json:"ike_id,omitempty"`
}

func (a *app) monitorCommand() *cobra.Command {
	var o outputFlags
	var (
		socket   string
		count    int
		duration time.Duration
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Stream iked's IKE and Child SA events (up, down, rekey) and, with --log, its log",
		Long: `Print one line per event iked raises, as they happen: an IKE SA established
(ike-up) or deleted (ike-down), a Child SA installed (child-up) or deleted
(child-down), an IKE or Child SA rekeyed (ike-rekey, child-rekey, old ->
new), and with --log iked's log lines at that level or above. spuctl is a
client of iked's VICI socket (--vici-socket), as swanctl --monitor-sa is;
iked started with -vici off serves none.

It runs until Ctrl-C, --count events or --duration, and exits 0 then; 1
if iked goes away. The time is when spuctl received the event.`,
		Example: `  spuctl monitor
  spuctl monitor --log info
  spuctl monitor -o json --count 10 --duration 5m | jq -r .event`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			if count < 0 {
				return usagef("--count %d: want 0 (no limit) or more", count)
			}
			if duration < 0 {
				return usagef("--duration %s: want 0 (no limit) or more", duration)
			}
			maxLevel := -1
			switch logLevel {
			case "":
			case "info":
				maxLevel = 1
			case "warn":
				maxLevel = 0
			default:
				return usagef("--log %q: want info or warn (iked raises log events at those)", logLevel)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m := monitor{socket: socket, out: a.out, json: asJSON, count: count, logLevel: maxLevel}
			return m.run(ctx, duration)
		},
	}
	cmd.Flags().StringVar(&socket, "vici-socket", defaultVICISocket, "iked's VICI socket (iked -vici)")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many events (0: no limit)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: no limit)")
	cmd.Flags().StringVar(&logLevel, "log", "", "also show iked's log lines at this level or above: info or warn")
	cmd.RegisterFlagCompletionFunc("log", cobra.FixedCompletions([]string{"info", "warn"}, cobra.ShellCompDirectiveNoFileComp))
	o.add(cmd, "one event a line")
	return cmd
}

// monitor is one run of spuctl monitor.
type monitor struct {
	socket   string
	out      io.Writer
	json     bool
	count    int
	logLevel int // the highest charon level of log events shown; -1: none
}

// run streams events until ctx ends, duration passes (0: never) or
// count events are written.
func (m *monitor) run(ctx context.Context, duration time.Duration) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	nc, err := d.DialContext(dctx, "unix", m.socket)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return dialError("iked (VICI)", m.socket, "--vici-socket", err)
	}
	defer nc.Close()
	events := monitorEvents
	if m.logLevel >= 0 {
		events = append(events[:len(events):len(events)], vici.EvLog)
	}
	nc.SetDeadline(time.Now().Add(registerTimeout))
	// Events of those registered first may come before the next
	// confirmation: they are kept, and shown first.
	var early []vici.Packet
	for _, ev := range events {
		if err := vici.WritePacket(nc, vici.Packet{Type: vici.EventRegister, Name: ev}); err != nil {
			return m.lost(fmt.Sprintf("register %s", ev), err)
		}
	confirm:
		for {
			p, err := vici.ReadPacket(nc)
			switch {
			case err != nil:
				return m.lost(fmt.Sprintf("register %s", ev), err)
			case p.Type == vici.Event:
				early = append(early, p)
			case p.Type == vici.EventUnknown:
				return fmt.Errorf("iked (VICI) at %s: event %s unknown (is it iked? charon's VICI needs swanctl --monitor-sa)", m.socket, ev)
			case p.Type != vici.EventConfirm:
				return fmt.Errorf("iked (VICI) at %s: register %s: answered %s", m.socket, ev, p.Type)
			default:
				break confirm
			}
		}
	}
	var deadline time.Time
	if duration > 0 {
		deadline = time.Now().Add(duration)
	}
	nc.SetDeadline(deadline)
	// Ctrl-C ends the read under way; the stream ends quietly.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			nc.SetReadDeadline(time.Now())
		case <-done:
		}
	}()
	n := 0
	for m.count == 0 || n < m.count {
		var p vici.Packet
		if len(early) > 0 {
			p, early = early[0], early[1:]
		} else if p, err = vici.ReadPacket(nc); err != nil {
			var ne net.Error
			if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return m.lost("events", err)
		}
		if p.Type != vici.Event {
			return fmt.Errorf("iked (VICI) at %s: %s where an event was due", m.socket, p.Type)
		}
		ev, ok := decodeEvent(p.Name, p.Msg, time.Now())
		if !ok || ev.Log != nil && ev.Log.Level > m.logLevel {
			continue
		}
		var line []byte
		if m.json {
			line, err = json.Marshal(ev)
			if err != nil {
				return err
			}
		} else {
			line = []byte(ev.text())
		}
		if _, err := m.out.Write(append(line, '\n')); err != nil {
			return err
		}
		n++
	}
	return nil
}

// lost is the error of a connection that failed: iked stopped, most
// likely.
func (m *monitor) lost(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("iked (VICI) at %s: %s: connection closed (iked stopped?)", m.socket, what)
	}
	return fmt.Errorf("iked (VICI) at %s: %s: %v", m.socket, what, err)
}

// decodeEvent reads a VICI event as iked (and charon) lay it out; false
// for one monitor does not show.
func decodeEvent(name string, msg *vici.Section, now time.Time) (monitorEvent, bool) {
	ev := monitorEvent{Time: now.UTC()}
	switch name {
	case vici.EvLog:
		l := &monitorLog{Msg: msg.Get("msg")}
		l.Level, _ = strconv.Atoi(msg.Get("level"))
		l.Thread, _ = strconv.Atoi(msg.Get("thread"))
		ev.Event, ev.Log, ev.Conn = "log", l, msg.Get("ikesa-name")
		if id, err := strconv.ParseUint(msg.Get("ikesa-uniqueid"), 10, 32); err == nil {
			l.IKEID = uint32(id)
		}
		return ev, true
	case vici.EvIKEUpDown, vici.EvChildUpDown:
		subs := msg.Subs()
		if len(subs) == 0 {
			return ev, false
		}
		up := msg.Get("up") == "yes"
		ev.Conn, ev.IKE = subs[0].Name, decodeIKE(subs[0].Section)
		kind := "ike"
		if name == vici.EvChildUpDown {
			kind = "child"
			for _, c := range subs[0].Section.Sub("child-sas").Subs() {
				ev.Child = decodeChild(c.Section)
				break
			}
		}
		ev.Event = kind + "-down"
		if up {
			ev.Event = kind + "-up"
		}
		return ev, true
	case vici.EvIKERekey:
		subs := msg.Subs()
		if len(subs) == 0 {
			return ev, false
		}
		old, new := subs[0].Section.Sub("old"), subs[0].Section.Sub("new")
		ev.Event, ev.Conn, ev.IKE = "ike-rekey", subs[0].Name, decodeIKE(new)
		ev.OldIKE = &monitorOld{UniqueID: uint32(atou(old.Get("uniqueid"))), SPIi: old.Get("initiator-spi"), SPIr: old.Get("responder-spi")}
		return ev, true
	case vici.EvChildRekey:
		subs := msg.Subs()
		if len(subs) == 0 {
			return ev, false
		}
		ev.Event, ev.Conn, ev.IKE = "child-rekey", subs[0].Name, decodeIKE(subs[0].Section)
		for _, c := range subs[0].Section.Sub("child-sas").Subs() {
			old := c.Section.Sub("old")
			ev.Child = decodeChild(c.Section.Sub("new"))
			in, out := uint32(hexu(old.Get("spi-in"))), uint32(hexu(old.Get("spi-out")))
			ev.OldChild = &monitorOld{UniqueID: uint32(atou(old.Get("uniqueid"))), SPIIn: &in, SPIOut: &out}
			break
		}
		return ev, true
	}
	return ev, false
}

func decodeIKE(s *vici.Section) *monitorIKE {
	return &monitorIKE{
		UniqueID:  uint32(atou(s.Get("uniqueid"))),
		State:     s.Get("state"),
		Local:     net.JoinHostPort(s.Get("local-host"), s.Get("local-port")),
		Remote:    net.JoinHostPort(s.Get("remote-host"), s.Get("remote-port")),
		LocalID:   s.Get("local-id"),
		RemoteID:  s.Get("remote-id"),
		Initiator: s.Get("initiator") == "yes",
		SPIi:      s.Get("initiator-spi"),
		SPIr:      s.Get("responder-spi"),
		SPU:       int(atou(s.Get("spu"))),
		Logical:   int(atou(s.Get("logical-spu"))),
	}
}

func decodeChild(s *vici.Section) *monitorChild {
	c := &monitorChild{
		Name:     s.Get("name"),
		UniqueID: uint32(atou(s.Get("uniqueid"))),
		ReqID:    uint32(atou(s.Get("reqid"))),
		State:    s.Get("state"),
		SPIIn:    uint32(hexu(s.Get("spi-in"))),
		SPIOut:   uint32(hexu(s.Get("spi-out"))),
		Encap:    s.Get("encap") == "yes",
		LocalTS:  orNone(s.List("local-ts")),
		RemoteTS: orNone(s.List("remote-ts")),
	}
	if v, ok := s.Lookup("spu"); ok {
		n := int(atou(v))
		c.SPU = &n
	}
	return c
}

func orNone(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// atou and hexu read a number the daemon wrote; what does not parse is
// 0 (the line still shows the rest).
func atou(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func hexu(s string) uint64 {
	n, _ := strconv.ParseUint(s, 16, 64)
	return n
}

// text is the event's line: the time, the event, the SA as
// conn#id (conn/child#id for a Child SA), then what the event says.
func (e *monitorEvent) text() string {
	var b strings.Builder
	b.WriteString(e.Time.Format(time.RFC3339))
	b.WriteByte(' ')
	b.WriteString(e.Event)
	ends := func(s *monitorIKE) {
		fmt.Fprintf(&b, " %s[%s] <-> %s[%s]", s.Local, s.LocalID, s.Remote, s.RemoteID)
	}
	child := func(c *monitorChild) {
		fmt.Fprintf(&b, " %s/%s#%d", e.Conn, c.Name, c.UniqueID)
	}
	switch e.Event {
	case "ike-up", "ike-down":
		fmt.Fprintf(&b, " %s#%d", e.Conn, e.IKE.UniqueID)
		ends(e.IKE)
		fmt.Fprintf(&b, " %s spi_i=%s spi_r=%s spu=%d", e.IKE.State, e.IKE.SPIi, e.IKE.SPIr, e.IKE.SPU)
	case "child-up", "child-down":
		if e.Child == nil {
			fmt.Fprintf(&b, " %s#%d (no Child SA in the event)", e.Conn, e.IKE.UniqueID)
			break
		}
		child(e.Child)
		fmt.Fprintf(&b, " (ike #%d) %s reqid=%d spi_in=%08x spi_out=%08x %s === %s", e.IKE.UniqueID, e.Child.State, e.Child.ReqID,
			e.Child.SPIIn, e.Child.SPIOut, strings.Join(e.Child.LocalTS, ","), strings.Join(e.Child.RemoteTS, ","))
		if e.Child.Encap {
			b.WriteString(" encap")
		}
	case "ike-rekey":
		fmt.Fprintf(&b, " %s#%d -> #%d", e.Conn, e.OldIKE.UniqueID, e.IKE.UniqueID)
		ends(e.IKE)
		fmt.Fprintf(&b, " spi_i=%s -> %s spi_r=%s -> %s", e.OldIKE.SPIi, e.IKE.SPIi, e.OldIKE.SPIr, e.IKE.SPIr)
	case "child-rekey":
		if e.Child == nil || e.OldChild == nil {
			fmt.Fprintf(&b, " %s#%d (no Child SA in the event)", e.Conn, e.IKE.UniqueID)
			break
		}
		fmt.Fprintf(&b, " %s/%s#%d -> #%d (ike #%d) spi_in=%08x -> %08x spi_out=%08x -> %08x", e.Conn, e.Child.Name,
			e.OldChild.UniqueID, e.Child.UniqueID, e.IKE.UniqueID, *e.OldChild.SPIIn, e.Child.SPIIn, *e.OldChild.SPIOut, e.Child.SPIOut)
	case "log":
		level := "info"
		if e.Log.Level <= 0 {
			level = "warn"
		}
		b.WriteString(" " + level)
		if e.Conn != "" {
			b.WriteString(" " + e.Conn)
			if e.Log.IKEID != 0 {
				fmt.Fprintf(&b, "#%d", e.Log.IKEID)
			}
		}
		b.WriteString(": " + e.Log.Msg)
	}
	return b.String()
}
