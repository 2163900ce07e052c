package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultSocket is where spud listens unless told otherwise.
const DefaultSocket = "/run/spugate/spud.sock"

// Event is an event received from the server.
type Event struct {
	Kind string
	Body json.RawMessage
}

// Client is a connection to spud. Calls may be made from several goroutines.
type Client struct {
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

// Dial connects to the SA API at path.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("api: connect to spud at %s: %w", path, err)
	}
	cl := &Client{c: c, w: bufio.NewWriter(c), pending: map[uint64]chan *Message{},
		events: make(chan Event, eventQueue), done: make(chan struct{}), Timeout: 30 * time.Second}
	go cl.readLoop()
	return cl, nil
}

func (c *Client) readLoop() {
	r := bufio.NewReader(c.c)
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
	c.err = fmt.Errorf("api: connection to spud lost: %w", err)
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
// (either may be nil).
func (c *Client) Call(op string, req, reply any) error {
	var body json.RawMessage
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("api: %s: encode: %w", op, err)
		}
		body = b
	}
	ch := make(chan *Message, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
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
		return fmt.Errorf("api: %s: %w", op, err)
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
		return fmt.Errorf("api: %s: no reply from spud within %v", op, c.Timeout)
	}
	if m == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err
	}
	if !m.OK {
		return &Error{Op: op, Msg: m.Error}
	}
	if reply != nil && len(m.Body) > 0 {
		if err := json.Unmarshal(m.Body, reply); err != nil {
			return fmt.Errorf("api: %s: decode reply: %w", op, err)
		}
	}
	return nil
}

// Error is an error the server returned.
type Error struct {
	Op, Msg string
}

func (e *Error) Error() string { return "spud: " + e.Op + ": " + e.Msg }

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

// Typed calls.

func (c *Client) Hello(client string) (*HelloReply, error) {
	var r HelloReply
	if err := c.Call(OpHello, HelloRequest{Client: client}, &r); err != nil {
		return nil, err
	}
	if r.Version != Version {
		return nil, fmt.Errorf("api: spud speaks version %d, we speak %d", r.Version, Version)
	}
	return &r, nil
}

func (c *Client) AllocSPI(req SPIAllocRequest) (SPIAllocReply, error) {
	var r SPIAllocReply
	err := c.Call(OpSPIAlloc, req, &r)
	return r, err
}

func (c *Client) AddSA(sa *SA) error         { return c.Call(OpSAAdd, sa, nil) }
func (c *Client) UpdateSA(u *SAUpdate) error { return c.Call(OpSAUpdate, u, nil) }
func (c *Client) DelSA(id SAID) error        { return c.Call(OpSADel, id, nil) }
func (c *Client) DelPolicy(id uint32) error  { return c.Call(OpPolicyDel, PolicyID{ID: id}, nil) }
func (c *Client) SetSPUMap(m []int) error    { return c.Call(OpSPUMapSet, SPUMap{Map: m}, nil) }

func (c *Client) DumpSAs(keys bool) ([]SAState, error) {
	var r SADump
	err := c.Call(OpSADump, DumpRequest{Keys: keys}, &r)
	return r.SAs, err
}

func (c *Client) AddPolicy(p *Policy) (PolicyAddReply, error) {
	var r PolicyAddReply
	err := c.Call(OpPolicyAdd, p, &r)
	return r, err
}

func (c *Client) DumpPolicies() ([]PolicyState, error) {
	var r PolicyDump
	err := c.Call(OpPolicyDump, DumpRequest{}, &r)
	return r.Policies, err
}

func (c *Client) Stats() (*Stats, error) {
	var r Stats
	err := c.Call(OpStats, nil, &r)
	return &r, err
}

func (c *Client) SPUs() (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUList, nil, &r)
	return &r, err
}

func (c *Client) DrainSPU(id int) (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUDrain, SPURequest{ID: id}, &r)
	return &r, err
}

func (c *Client) AddSPU(id int) (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUAdd, SPURequest{ID: id}, &r)
	return &r, err
}

// FailSPU makes SPU id panic (fault injection, for tests).
func (c *Client) FailSPU(id int) error { return c.Call(OpSPUFail, SPURequest{ID: id}, nil) }
