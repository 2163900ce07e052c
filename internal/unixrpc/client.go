package unixrpc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Event is an event received from the server.
type Event struct {
	Kind string          // what happened: the server's event names
	Body json.RawMessage // the event's body, for the receiver to decode
}

// Client is a connection to a server. Calls may be made from several
// goroutines. It does not reconnect: when Done is closed, the owner dials
// again (iked does, and resyncs spud).
type Client struct {
	peer    string
	c       net.Conn
	wmu     sync.Mutex
	w       *bufio.Writer
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *Message
	events  chan Event
	err     error
	done    chan struct{}
	// Timeout bounds each call (default 30 s).
	Timeout time.Duration
}

// readBuffer is the buffer of a client's reads.
const readBuffer = 64 << 10

// Dial connects to the server at path. peer names the server in errors
// ("spud", "iked"): a refusal reads "peer: op: why".
func Dial(peer, path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("unixrpc: connect to %s at %s: %w", peer, path, err)
	}
	cl := &Client{peer: peer, c: c, w: bufio.NewWriter(c), pending: map[uint64]chan *Message{},
		events: make(chan Event, eventQueue), done: make(chan struct{}), Timeout: 30 * time.Second}
	go cl.readLoop()
	return cl, nil
}

func (c *Client) readLoop() {
	// Large: a frame's bytes longer than the buffer are read straight
	// into the frame, not through it.
	r := bufio.NewReaderSize(c.c, readBuffer)
	var err error
	for {
		var m *Message
		m, err = ReadMessage(r)
		if err != nil {
			break
		}
		if m.Event != "" {
			select {
			case c.events <- Event{Kind: m.Event, Body: m.Body}:
			default:
				// The consumer is not keeping up; the server's own loss
				// accounting does not see this, so count it as such.
				select {
				case c.events <- Event{Kind: EventLost, Body: json.RawMessage(`{"count":1}`)}:
				default:
				}
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	c.mu.Lock()
	c.err = &closedError{peer: c.peer, cause: err}
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.done)
	close(c.events)
}

// Done is closed when the connection is lost.
func (c *Client) Done() <-chan struct{} { return c.done }

// Call sends op with req as body and decodes the reply's body into reply
// (either may be nil). A refusal is an *Error in the returned error's
// chain; a lost connection has ErrClosed in it.
func (c *Client) Call(op string, req, reply any) error {
	_, err := c.CallData(op, req, reply)
	return err
}

// CallData is Call for a request that asks for a reply with data of its
// own encoding (WithData): it returns the reply's Message.Data, nil if
// the server sent none.
func (c *Client) CallData(op string, req, reply any) ([]byte, error) {
	var body json.RawMessage
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("unixrpc: %s: encode: %w", op, err)
		}
		body = b
	}
	ch := make(chan *Message, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	err := WriteMessage(c.w, &Message{ID: id, Op: op, Body: body})
	if err == nil {
		err = c.w.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		if !errors.Is(err, errMessageTooLarge) {
			// A write that fails is a lost connection (the server closed
			// it: a broken pipe), whether or not the reader saw it yet.
			err = &closedError{peer: c.peer, cause: err}
		}
		return nil, fmt.Errorf("unixrpc: %s: %w", op, err)
	}
	t := time.NewTimer(c.Timeout)
	defer t.Stop()
	var m *Message
	select {
	case m = <-ch:
	case <-t.C:
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("unixrpc: %s: no reply from %s within %v", op, c.peer, c.Timeout)
	}
	if m == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return nil, c.err
	}
	if !m.OK {
		code := m.Code
		if code == "" {
			code = CodeFailed
		}
		return nil, fmt.Errorf("%s: %s: %w", c.peer, op, &Error{Code: code, Message: m.Error})
	}
	if reply != nil && len(m.Body) > 0 {
		if err := json.Unmarshal(m.Body, reply); err != nil {
			return nil, fmt.Errorf("unixrpc: %s: decode reply: %w", op, err)
		}
	}
	return m.Data, nil
}

// Subscribe asks for events; they arrive on the returned channel, which is
// closed when the connection is lost.
func (c *Client) Subscribe() (<-chan Event, error) {
	if err := c.Call(OpSubscribe, nil, nil); err != nil {
		return nil, err
	}
	return c.events, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	err := c.c.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
