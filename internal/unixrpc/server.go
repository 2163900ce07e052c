package unixrpc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// HandlerFunc serves one operation: body is the request's body (possibly
// empty); the returned value, if not nil, becomes the response's body: a
// json.RawMessage as it is (it must be compact JSON), a WithData as its
// Body and Data, anything else through json.Marshal. An error's text is
// sent as it is, with the code CodeOf finds in it.
type HandlerFunc func(body json.RawMessage) (any, error)

// WithData is a handler's reply with bytes of its own encoding besides its
// JSON body (Message.Data, in a DataFrame): return it only to a request
// that asked for it, a client that knows such frames.
type WithData struct {
	Body any    // the body, as a handler's other replies (nil: none)
	Data []byte // sent as it is after the body
}

// Server serves operations on a unix socket that only root (and AllowUID)
// may open, and publishes events to the connections that subscribed.
type Server struct {
	// Log receives refused connections and handlers' panics.
	Log *slog.Logger

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	ln       *net.UnixListener
	path     string // the socket's path, removed by Close
	conns    map[*serverConn]struct{}
	closed   bool
	wg       sync.WaitGroup

	// AllowUID, when >= 0, is a uid besides root allowed to connect (tests
	// run the client as the same uid as the server).
	AllowUID int

	refused int // connections refused over MaxConns (Serve's goroutine only)
}

// writeBuffer is the buffer of a connection's writes: a page's data
// larger than it goes to the socket without a copy.
const writeBuffer = 64 << 10

// eventQueue bounds what a slow subscriber can pin.
const eventQueue = 4096

// MaxConns bounds the connections a server holds at once: each pins two
// goroutines, its event queue and up to a message being read. iked holds
// one per worker and one for events; spuctl, one per command.
const MaxConns = 256

type serverConn struct {
	c          *net.UnixConn
	out        chan *Message
	subscribed atomic.Bool
	lost       atomic.Uint64
	done       chan struct{}
}

// NewServer returns a server with no handlers but events.subscribe.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{Log: log, handlers: map[string]HandlerFunc{}, conns: map[*serverConn]struct{}{}, AllowUID: -1}
}

// Handle registers the handler of op.
func (s *Server) Handle(op string, h HandlerFunc) {
	s.mu.Lock()
	s.handlers[op] = h
	s.mu.Unlock()
}

// Listen creates the socket at path, mode 0600, replacing a stale one (a
// socket file nobody answers on); it refuses to replace a live one. The
// socket is bound in a private folder beside path and renamed into place
// once its mode is set, so nobody can connect before it is 0600, and no
// process-wide umask changes under the daemon's other goroutines.
func (s *Server) Listen(path string) error {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("unixrpc: %s: another server is listening", path)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("unixrpc: remove stale %s: %w", path, err)
	}
	priv, err := os.MkdirTemp(filepath.Dir(path), ".unixrpc-")
	if err != nil {
		return fmt.Errorf("unixrpc: listen %s: %w", path, err)
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fmt.Errorf("unixrpc: listen %s: %w", path, err)
	}
	// The listener would remove tmp, not path, when closed.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("unixrpc: chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return fmt.Errorf("unixrpc: listen %s: %w", path, err)
	}
	s.mu.Lock()
	s.ln, s.path = ln, path
	s.mu.Unlock()
	return nil
}

// Serve accepts connections until Close.
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
			return fmt.Errorf("unixrpc: accept: %w", err)
		}
		if err := s.checkPeer(c); err != nil {
			s.Log.Warn("unixrpc: refused connection", "err", err)
			c.Close()
			continue
		}
		sc := &serverConn{c: c, out: make(chan *Message, eventQueue), done: make(chan struct{})}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		if len(s.conns) >= MaxConns {
			s.mu.Unlock()
			s.refused++
			if s.refused == 1 || s.refused%1000 == 0 {
				s.Log.Warn("unixrpc: refused connection: too many open", "limit", MaxConns, "refused", s.refused)
			}
			c.Close()
			continue
		}
		s.conns[sc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go s.writeLoop(sc)
		go s.readLoop(sc)
	}
}

func (s *Server) checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != s.AllowUID {
		return fmt.Errorf("peer pid %d uid %d is not root", cred.Pid, cred.Uid)
	}
	return nil
}

func (s *Server) readLoop(sc *serverConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		close(sc.done)
		sc.c.Close()
	}()
	r := bufio.NewReader(sc.c)
	for {
		m, err := ReadMessage(r)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				s.Log.Debug("unixrpc: connection closed", "err", err)
			}
			return
		}
		resp := s.dispatch(sc, m)
		select {
		case sc.out <- resp:
		case <-sc.done:
			return
		}
	}
}

func (s *Server) dispatch(sc *serverConn, m *Message) (resp *Message) {
	resp = &Message{ID: m.ID}
	defer func() {
		// A handler's bug must cost one request, not the daemon.
		if r := recover(); r != nil {
			s.Log.Error("unixrpc: handler panicked", "op", m.Op, "panic", r)
			resp.OK, resp.Error, resp.Code, resp.Body = false, fmt.Sprintf("%s: internal error", m.Op), CodeInternal, nil
		}
	}()
	if m.V != Version {
		resp.Error, resp.Code = fmt.Sprintf("protocol version %d not supported (server speaks %d)", m.V, Version), CodeBadRequest
		return resp
	}
	if m.Op == OpSubscribe {
		sc.subscribed.Store(true)
		resp.OK = true
		return resp
	}
	s.mu.Lock()
	h := s.handlers[m.Op]
	s.mu.Unlock()
	if h == nil {
		resp.Error, resp.Code = fmt.Sprintf("unknown operation %q", m.Op), CodeBadRequest
		return resp
	}
	body, err := h(m.Body)
	if err != nil {
		resp.Error, resp.Code = err.Error(), CodeOf(err)
		return resp
	}
	resp.OK = true
	var data []byte
	if wd, ok := body.(WithData); ok {
		// Non-nil, even empty: the client asked for a data frame.
		body, data = wd.Body, wd.Data
		if data == nil {
			data = []byte{}
		}
	}
	if body != nil {
		// A handler that encoded its reply itself (a dump's page, sized
		// as it was encoded) returns it as a json.RawMessage, sent as it
		// is rather than scanned and copied again by json.Marshal.
		b, ok := body.(json.RawMessage)
		var err error
		if !ok {
			b, err = json.Marshal(body)
		}
		if err != nil {
			resp.OK, resp.Error, resp.Code = false, fmt.Sprintf("%s: encode reply: %v", m.Op, err), CodeInternal
			return resp
		}
		resp.Body = b
	}
	if n := len(resp.Body) + len(data); n > MaxMessage-envelope {
		// Sent, it would break the stream and so the connection, and
		// every request on it: this one fails alone.
		resp.OK, resp.Code, resp.Body = false, CodeTooLarge, nil
		resp.Error = fmt.Sprintf("%s: reply of %d bytes exceeds the message limit of %d", m.Op, n, MaxMessage)
		return resp
	}
	resp.Data = data
	return resp
}

func (s *Server) writeLoop(sc *serverConn) {
	defer s.wg.Done()
	// Large: a listing's replies come back to back (the client asks for
	// the next page while it takes one), and small ones are batched.
	w := bufio.NewWriterSize(sc.c, writeBuffer)
	for {
		select {
		case m := <-sc.out:
			if err := WriteMessage(w, m); err != nil {
				sc.c.Close()
				return
			}
			// Batch what is already queued into one write.
			for more := true; more; {
				select {
				case m := <-sc.out:
					if err := WriteMessage(w, m); err != nil {
						sc.c.Close()
						return
					}
				default:
					more = false
				}
			}
			if n := sc.lost.Swap(0); n > 0 {
				b, _ := json.Marshal(LostEvents{Count: n})
				WriteMessage(w, &Message{Event: EventLost, Body: b})
			}
			if err := w.Flush(); err != nil {
				sc.c.Close()
				return
			}
		case <-sc.done:
			return
		}
	}
}

// Publish sends an event to every subscribed connection. It never blocks:
// a subscriber whose queue is full loses the event and is told how many it
// lost.
func (s *Server) Publish(event string, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		s.Log.Error("unixrpc: encode event", "event", event, "err", err)
		return
	}
	m := &Message{Event: event, Body: b}
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.conns {
		if !sc.subscribed.Load() {
			continue
		}
		select {
		case sc.out <- m:
		default:
			sc.lost.Add(1)
		}
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
		os.Remove(s.path)
	}
	for sc := range s.conns {
		sc.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Decode unmarshals a request body strictly: unknown fields are errors, so
// a typo in a client is not silently ignored. Its errors are
// CodeBadRequest.
func Decode(body json.RawMessage, v any) error {
	if len(body) == 0 {
		return Errorf(CodeBadRequest, "missing request body")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return Errorf(CodeBadRequest, "bad request body: %w", err)
	}
	return nil
}
