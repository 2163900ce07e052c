package vici

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler answers one command. Its Call names the request and lets it
// stream events (list-sa, control-log) to the client before the answer.
// An error becomes the answer {success: no, errmsg: ...}, the form charon
// gives for every command that fails.
type Handler func(c *Call) (*Section, error)

// Call is one command being answered.
type Call struct {
	// Command is the command's name, Req its message.
	Command string
	Req     *Section
	conn    *conn
}

// Wants reports whether the client registered for event: streamed
// events go only to a client that asked for them, as charon's do.
func (c *Call) Wants(event string) bool { return c.conn.registered(event) }

// Emit sends event to the client if it registered for it, before the
// command's answer. It blocks while the client reads slowly (a listing
// is the client's own), and fails once the connection is gone.
func (c *Call) Emit(event string, m *Section) error {
	if !c.Wants(event) {
		return nil
	}
	return c.conn.send(Packet{Type: Event, Name: event, Msg: m}, true)
}

// Server is a VICI server on a unix socket: a goroutine per client
// connection, one command at a time per connection (the protocol's
// rule), events to the clients registered for them.
type Server struct {
	log *slog.Logger

	mu       sync.Mutex
	handlers map[string]Handler
	// events maps the known events to their registered connections: a
	// map replaced whole by Events, so that Subscribed, which iked's
	// workers call as they log and change SAs, takes no lock.
	events atomic.Pointer[map[string]*atomic.Int32]
	// since is when each event last went from no client to one.
	since  map[string]time.Time
	conns  map[*conn]struct{}
	ln     *net.UnixListener
	path   string
	closed bool
	wg     sync.WaitGroup

	// dropped counts events not delivered to a client whose queue was
	// full.
	dropped atomic.Uint64
}

// MaxConns bounds the clients served at once; more are refused (closed
// at once, logged), so that a runaway script cannot exhaust the daemon.
const MaxConns = 128

// eventQueue is the packets queued for one client's writer: broadcast
// events beyond it are dropped for that client (counted), never waited
// for, because they are raised on iked's worker goroutines.
const eventQueue = 1024

// writeTimeout bounds one packet's write to a client.
const writeTimeout = 30 * time.Second

// NewServer returns a server with no commands: Handle adds them, Events
// declares the events clients may register for.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, handlers: map[string]Handler{}, since: map[string]time.Time{}, conns: map[*conn]struct{}{}}
	s.events.Store(&map[string]*atomic.Int32{})
	return s
}

// Handle sets the handler of a command.
func (s *Server) Handle(cmd string, h Handler) {
	s.mu.Lock()
	s.handlers[cmd] = h
	s.mu.Unlock()
}

// Events declares events clients may register for; registering for any
// other gets EVENT_UNKNOWN.
func (s *Server) Events(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := maps.Clone(*s.events.Load())
	for _, n := range names {
		if m[n] == nil {
			m[n] = new(atomic.Int32)
		}
	}
	s.events.Store(&m)
}

// Subscribed reports whether some client is registered for event: a
// map read and atomic loads, no lock, for the daemon to check before it
// builds an event.
func (s *Server) Subscribed(event string) bool {
	n := (*s.events.Load())[event]
	return n != nil && n.Load() > 0
}

// Dropped is the number of events not delivered to a slow client.
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// Publish sends event to every client registered for it, without
// waiting: a client whose queue is full misses it (counted in Dropped).
func (s *Server) Publish(event string, m *Section) {
	b, err := AppendPacket(nil, Packet{Type: Event, Name: event, Msg: m})
	if err != nil {
		s.log.Warn("vici: event not sent", "event", event, "err", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.registered(event) {
			select {
			case c.out <- b:
			default:
				s.dropped.Add(1)
			}
		}
	}
}

// Listen creates the socket at path: mode 0600, or 0660 and owned by
// group when group is not empty (a name or a numeric id). It replaces a
// stale socket and refuses to replace one a server answers on. The
// socket is bound in a private folder and renamed into place once its
// mode and group are set, so nobody connects before.
func (s *Server) Listen(path, group string) error {
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			if g, err = user.LookupGroupId(group); err != nil {
				return fmt.Errorf("vici: socket group %q: no such group", group)
			}
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("vici: socket group %q: gid %q", group, g.Gid)
		}
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("vici: %s: another server is listening", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("vici: %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("vici: remove stale %s: %w", path, err)
	}
	if gid >= 0 {
		// A group socket in a folder the group cannot enter (iked's
		// /run/spugate is 0700) would be 0660 in vain.
		if st, err := os.Stat(filepath.Dir(path)); err == nil {
			sys, _ := st.Sys().(*syscall.Stat_t)
			m := st.Mode().Perm()
			if m&0o001 == 0 && (m&0o010 == 0 || sys == nil || int(sys.Gid) != gid) {
				return fmt.Errorf("vici: %s: group %s cannot enter %s (mode %04o): choose a socket in a folder it can reach",
					path, group, filepath.Dir(path), m)
			}
		}
	}
	priv, err := os.MkdirTemp(filepath.Dir(path), ".vici-")
	if err != nil {
		return fmt.Errorf("vici: listen %s: %w", path, err)
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fmt.Errorf("vici: listen %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(tmp, -1, gid); err != nil {
			ln.Close()
			return fmt.Errorf("vici: chown %s to group %s: %w", path, group, err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return fmt.Errorf("vici: chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return fmt.Errorf("vici: listen %s: %w", path, err)
	}
	s.mu.Lock()
	s.ln, s.path = ln, path
	s.mu.Unlock()
	return nil
}

// Serve accepts clients until Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("vici: accept: %w", err)
		}
		s.serveConn(c)
	}
}

// serveConn serves one client.
func (s *Server) serveConn(nc net.Conn) {
	s.mu.Lock()
	if s.closed || len(s.conns) >= MaxConns {
		n := len(s.conns)
		s.mu.Unlock()
		nc.Close()
		s.log.Warn("vici: client refused", "clients", n, "max", MaxConns)
		return
	}
	c := &conn{s: s, c: nc, out: make(chan []byte, eventQueue), done: make(chan struct{}), reg: map[string]bool{}}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go c.writer()
	go c.reader()
}

// Close stops accepting, closes every client and removes the socket.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ln, path := s.ln, s.path
	for c := range s.conns {
		c.c.Close()
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
		os.Remove(path)
	}
	// A command in flight (an initiate waits up to its timeout) ends on
	// its own; the daemon stopping does not wait for it beyond a moment.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("vici: closed with commands still running", "waited", closeWait.String())
	}
	return nil
}

// closeWait bounds Close's wait for the clients' goroutines.
const closeWait = 2 * time.Second

// conn is one client.
type conn struct {
	s   *Server
	c   net.Conn
	out chan []byte // encoded packets, for writer
	// done is closed when the reader ends: the writer stops, and Emit
	// stops waiting.
	done chan struct{}
	mu   sync.Mutex
	reg  map[string]bool
}

func (c *conn) registered(event string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reg[event]
}

// send queues p for the writer; with wait it blocks until there is room
// (or the connection ends), else it drops p when the queue is full.
func (c *conn) send(p Packet, wait bool) error {
	b, err := AppendPacket(nil, p)
	if err != nil {
		return err
	}
	if !wait {
		select {
		case c.out <- b:
		default:
			c.s.dropped.Add(1)
		}
		return nil
	}
	select {
	case c.out <- b:
		return nil
	case <-c.done:
		return errors.New("vici: client gone")
	}
}

// writeBatch is how many bytes of queued packets the writer gathers into
// one write: a listing of 10,000 IKE SAs is 10,000 events, and a write
// each was most of its time.
const writeBatch = 64 << 10

func (c *conn) writer() {
	defer c.s.wg.Done()
	var buf []byte
	for {
		select {
		case b := <-c.out:
			buf = append(buf[:0], b...)
		gather:
			for len(buf) < writeBatch {
				select {
				case b := <-c.out:
					buf = append(buf, b...)
				default:
					break gather
				}
			}
			c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := c.c.Write(buf); err != nil {
				// The reader sees the closed socket and ends.
				c.c.Close()
				<-c.done
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *conn) reader() {
	defer c.s.wg.Done()
	defer func() {
		close(c.done)
		c.c.Close()
		// Not under c.mu: Publish takes the server's lock, then c.mu.
		c.mu.Lock()
		reg := c.reg
		c.reg = map[string]bool{}
		c.mu.Unlock()
		for ev, on := range reg {
			if on {
				c.s.unregister(ev)
			}
		}
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	for {
		p, err := ReadPacket(c.c)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.s.log.Warn("vici: client dropped", "err", err.Error())
			}
			return
		}
		switch p.Type {
		case CmdRequest:
			if err := c.command(p); err != nil {
				return
			}
		case EventRegister, EventUnreg:
			typ := EventConfirm
			if !c.s.known(p.Name) {
				typ = EventUnknown
			} else {
				c.mu.Lock()
				was := c.reg[p.Name]
				c.reg[p.Name] = p.Type == EventRegister
				c.mu.Unlock()
				switch {
				case p.Type == EventRegister && !was:
					c.s.register(p.Name)
				case p.Type == EventUnreg && was:
					c.s.unregister(p.Name)
				}
			}
			if err := c.send(Packet{Type: typ}, true); err != nil {
				return
			}
		default:
			c.s.log.Warn("vici: client dropped", "err", fmt.Sprintf("vici: %s from a client", p.Type))
			return
		}
	}
}

func (s *Server) known(event string) bool {
	return (*s.events.Load())[event] != nil
}

func (s *Server) counter(event string) *atomic.Int32 {
	return (*s.events.Load())[event]
}

func (s *Server) register(event string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := (*s.events.Load())[event]; n != nil && n.Add(1) == 1 {
		s.since[event] = time.Now()
	}
}

// Since returns the earliest time since which some client has been
// registered for one of events without a break (zero if none is): an SA
// established after it is news to them, one before is not.
func (s *Server) Since(events ...string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, e := range events {
		if n := (*s.events.Load())[e]; n != nil && n.Load() > 0 && (t.IsZero() || s.since[e].Before(t)) {
			t = s.since[e]
		}
	}
	return t
}

func (s *Server) unregister(event string) {
	if n := s.counter(event); n != nil {
		n.Add(-1)
	}
}

// command runs one command and queues its answer; an error means the
// connection is gone.
func (c *conn) command(p Packet) error {
	c.s.mu.Lock()
	h := c.s.handlers[p.Name]
	c.s.mu.Unlock()
	if h == nil {
		return c.send(Packet{Type: CmdUnknown}, true)
	}
	resp, err := c.run(h, &Call{Command: p.Name, Req: p.Msg, conn: c})
	if err != nil {
		resp = Failure(err)
	}
	if resp == nil {
		resp = &Section{}
	}
	if err := c.send(Packet{Type: CmdResponse, Msg: resp}, true); err != nil {
		if errors.Is(err, ErrSegmentTooLarge) {
			// The answer is the daemon's: say so rather than drop the
			// client.
			return c.send(Packet{Type: CmdResponse, Msg: Failure(fmt.Errorf("%s: %w", p.Name, err))}, true)
		}
		return err
	}
	return nil
}

// run calls h, turning a panic into an error: one bad request must not
// take the daemon down.
func (c *conn) run(h Handler, call *Call) (resp *Section, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.s.log.Error("vici: command panicked", "command", call.Command, "panic", fmt.Sprint(r))
			resp, err = nil, fmt.Errorf("%s: internal error", call.Command)
		}
	}()
	return h(call)
}

// Failure is the answer of a command that failed: success no and the
// error as errmsg, as charon answers.
func Failure(err error) *Section {
	return (&Section{}).Set("success", "no").Set("errmsg", err.Error())
}

// Success is the answer of a command that succeeded.
func Success() *Section { return (&Section{}).Set("success", "yes") }
