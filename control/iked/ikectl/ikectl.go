// Package ikectl is the control protocol of iked, what spuctl's list-conns,
// list-sas, initiate, terminate, load-initiate, reload and ike-stats speak: the
// RPC the SA API speaks too (package internal/unixrpc: a root-only 0600 unix
// socket, length-prefixed JSON messages with a version, request ids and
// coded errors), with iked's own operations and bodies.
package ikectl

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/internal/unixrpc"
)

// DefaultSocket is where iked listens unless configured otherwise.
const DefaultSocket = "/run/spugate/iked.sock"

// Operations.
const (
	OpHello     = "iked.hello" // nothing -> Hello
	OpConns     = "conns.list" // nothing -> Conns
	OpSAs       = "sas.list"   // SAsRequest -> SAs, a page
	OpInitiate  = "initiate"   // Initiate -> Result
	OpTerminate = "terminate"  // Terminate -> Result
	OpReload    = "reload"     // nothing -> ReloadResult
	OpStats     = "stats"      // nothing -> Stats
	OpRekey     = "rekey"      // Rekey -> Result
	// OpLoad is the load-initiator mode, for benchmarks and testbeds.
	OpLoad       = "load"        // Load -> LoadResult
	OpLoadStatus = "load.status" // LoadStatus -> LoadResult
)

// Hello identifies the daemon.
type Hello struct {
	Server  string `json:"server"`
	Workers []int  `json:"workers"` // the physical SPUs the workers serve
	Config  string `json:"config"`
}

// Conns lists the configured connections.
type Conns struct {
	Conns []Conn `json:"conns"`
}

// Conn is one configured connection.
type Conn struct {
	Name        string   `json:"name"`
	LocalAddrs  []string `json:"local_addrs"`
	RemoteAddrs []string `json:"remote_addrs"`
	Proposals   []string `json:"proposals"`
	LocalAuth   string   `json:"local_auth"`
	LocalID     string   `json:"local_id"`
	RemoteAuth  string   `json:"remote_auth"`
	RemoteID    string   `json:"remote_id"`
	DPDDelay    string   `json:"dpd_delay,omitempty"`
	Encap       bool     `json:"encap,omitempty"`
	Children    []Child  `json:"children"`
	// RekeyTime and ReauthTime are the IKE SA's (zero: none), for iked's
	// VICI server, in process: not sent over the control socket, whose
	// list-conns JSON is spuctl's documented schema.
	RekeyTime  time.Duration `json:"-"`
	ReauthTime time.Duration `json:"-"`
}

// Child is one configured child.
type Child struct {
	Name         string   `json:"name"`
	LocalTS      []string `json:"local_ts"`
	RemoteTS     []string `json:"remote_ts"`
	ESPProposals []string `json:"esp_proposals"`
	StartAction  string   `json:"start_action"`
	DPDAction    string   `json:"dpd_action"`
	CloseAction  string   `json:"close_action"`
	RekeyTime    string   `json:"rekey_time"`
	Trap         bool     `json:"trap,omitempty"` // a trap policy is installed
}

// SAs lists the IKE SAs.
type SAs struct {
	IKESAs []IKESA `json:"ike_sas"`
	// Next is the UniqueID to ask for the next page after; More says
	// there is one.
	Next uint32 `json:"next,omitempty"`
	More bool   `json:"more,omitempty"`
	// Packed holds the page's IKE SAs instead of IKESAs when the request
	// asked for EncodingPacked: DecodePackedIKESAs reads them.
	Packed []byte `json:"packed,omitempty"`
}

// SAsRequest asks for a page of IKE SAs: those with a UniqueID above
// After, in UniqueID order, at most Limit (0 or more than MaxSAsPage:
// MaxSAsPage; MaxJSONSAsPage for a page in JSON). A request without a
// body (an older spuctl) gets the first page, with More set if there are
// others.
type SAsRequest struct {
	After uint32 `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
	// Encoding is "" for IKESAs in JSON, EncodingPacked for Packed,
	// EncodingPackedData for packed IKE SAs as the reply's data.
	Encoding string `json:"encoding,omitempty"`
}

// MaxSAsPage is the most IKE SAs a packed page holds: with a Child SA
// each, 3 or 4 MB, inside a frame (16 MiB). Fewer pages are fewer round
// trips, each a dozen goroutine and thread wakeups in a row (iked's
// workers twice, spud for the counters), which a loaded machine makes
// milliseconds each: at a million IKE SAs those were most of a listing's
// wall time. An iked before it answers at most 4096 a page (1024 before
// that), which SAPages takes as well.
const MaxSAsPage = 8192

// MaxJSONSAsPage is the most IKE SAs a page in JSON holds: with a Child
// SA each, about 4 MB of JSON.
const MaxJSONSAsPage = 4096

// MaxPageChildren bounds the Child SAs of a page: iked ends a page early
// (More set) once its IKE SAs hold that many (half as many in JSON), so
// that IKE SAs with many Child SAs each still make a page that fits in a
// frame.
const MaxPageChildren = 16384

// IKESA is one IKE SA as swanctl --list-sas shows it.
type IKESA struct {
	Conn        string         `json:"conn"`
	UniqueID    uint32         `json:"unique_id"`
	State       string         `json:"state"`
	Initiator   bool           `json:"initiator"`
	SPIi        string         `json:"spi_i"`
	SPIr        string         `json:"spi_r"`
	Local       netip.AddrPort `json:"local"`
	Remote      netip.AddrPort `json:"remote"`
	LocalID     string         `json:"local_id"`
	RemoteID    string         `json:"remote_id"`
	Proposal    string         `json:"proposal"`
	NATLocal    bool           `json:"nat_local,omitempty"`
	NATRemote   bool           `json:"nat_remote,omitempty"`
	Established time.Time      `json:"established,omitzero"`
	RekeyIn     time.Duration  `json:"rekey_in,omitempty"`
	Worker      int            `json:"worker"`
	// SPU is the tunnel's anchor SPU (physical) and Logical its logical SPU.
	SPU      int        `json:"spu"`
	Logical  int        `json:"logical"`
	Children []ChildSA  `json:"children,omitempty"`
	Counters IKECounter `json:"counters"`

	// AuthLocal and AuthRemote say how each side authenticated ("psk",
	// "ecdsa-sha256", "rsa/pss-sha256"...); Fragmentation whether we
	// fragment our messages (RFC 7383, agreed in IKE_SA_INIT).
	AuthLocal     string `json:"auth_local,omitempty"`
	AuthRemote    string `json:"auth_remote,omitempty"`
	Fragmentation bool   `json:"fragmentation,omitempty"`
}

// IKECounter holds an IKE SA's message ids.
type IKECounter struct {
	MsgIDOut uint32 `json:"msgid_out"`
	MsgIDIn  uint32 `json:"msgid_in"`
}

// ChildSA is one Child SA with its data-plane counters.
type ChildSA struct {
	Name      string        `json:"name"`
	UniqueID  uint32        `json:"unique_id"`
	State     string        `json:"state"`
	ReqID     uint32        `json:"reqid"`
	SPIIn     uint32        `json:"spi_in"`
	SPIOut    uint32        `json:"spi_out"`
	Suite     string        `json:"suite"`
	Proposal  string        `json:"proposal"`
	Encap     bool          `json:"encap,omitempty"`
	LocalTS   []string      `json:"local_ts"`
	RemoteTS  []string      `json:"remote_ts"`
	Installed time.Time     `json:"installed,omitzero"`
	RekeyIn   time.Duration `json:"rekey_in,omitempty"`
	ExpireIn  time.Duration `json:"expire_in,omitempty"`
	BytesIn   uint64        `json:"bytes_in"`
	PacketsIn uint64        `json:"packets_in"`
	BytesOut  uint64        `json:"bytes_out"`
	PktsOut   uint64        `json:"packets_out"`
	SPU       int           `json:"spu"`
	Policies  []uint32      `json:"policies,omitempty"`
	Trap      bool          `json:"trap,omitempty"`
}

// Initiate asks for a connection's Child SA (all its children if Child is
// empty). Timeout bounds the wait for the outcome (default 30 s).
type Initiate struct {
	Conn    string        `json:"conn"`
	Child   string        `json:"child,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Terminate asks to delete IKE SAs (by connection or unique id) or, with
// Child or ChildID, only Child SAs.
type Terminate struct {
	Conn    string        `json:"conn,omitempty"`
	IKEID   uint32        `json:"ike_id,omitempty"`
	Child   string        `json:"child,omitempty"`
	ChildID uint32        `json:"child_id,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Rekey asks to rekey Child SAs (by connection or IKE SA unique id, and
// optionally child name or Child SA unique id) or, with IKE set, the IKE
// SAs. It returns once the rekeys are started.
type Rekey struct {
	Conn    string `json:"conn,omitempty"`
	IKEID   uint32 `json:"ike_id,omitempty"`
	Child   string `json:"child,omitempty"`
	ChildID uint32 `json:"child_id,omitempty"`
	IKE     bool   `json:"ike,omitempty"`
}

// Load asks for Count new IKE SAs of a connection, each with its first
// child, at most Window of them not yet established at a time (never
// reusing an IKE SA, unlike initiate): a load initiator, as strongSwan's
// load-tester plugin, for benchmarks and testbeds. Timeout stops starting
// new ones (zero: none); MaxFailures stops the run after that many
// failures (zero: no budget). With Background the call returns once the
// run started; load.status tells its progress.
type Load struct {
	Conn        string        `json:"conn"`
	Count       int           `json:"count"`
	Window      int           `json:"window,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	MaxFailures int           `json:"max_failures,omitempty"`
	Background  bool          `json:"background,omitempty"`
	// Identity is each IKE SA's local identity with "%d" its number
	// (load-tester's initiator_id); empty: the connection's.
	Identity string `json:"identity,omitempty"`
}

// LoadStatus asks for the progress of the current or last load run of a
// connection.
type LoadStatus struct {
	Conn string `json:"conn"`
}

// LoadResult is the progress or outcome of a load run. Rate is the IKE
// SAs (with their Child SA) established per second of Elapsed.
type LoadResult struct {
	Conn         string        `json:"conn"`
	Worker       int           `json:"worker"`
	Count        int           `json:"count"`
	Window       int           `json:"window"`
	Started      int           `json:"started"`
	Established  int           `json:"established"`
	Failed       int           `json:"failed"`
	FirstFailure string        `json:"first_failure,omitempty"`
	Stopped      string        `json:"stopped,omitempty"`
	Elapsed      time.Duration `json:"elapsed"`
	Rate         float64       `json:"rate"`
	Done         bool          `json:"done"`
}

// Result is the outcome of initiate, terminate or rekey.
type Result struct {
	Matched int    `json:"matched,omitempty"`
	Message string `json:"message,omitempty"`
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Added     []string `json:"added,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Changed   []string `json:"changed,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
}

// Stats are iked's counters.
type Stats struct {
	Counters  map[string]uint64 `json:"counters"`
	Failures  map[string]uint64 `json:"failures"`
	HalfOpen  int64             `json:"half_open"`
	IKESAs    int               `json:"ike_sas"`
	Workers   []WorkerStats     `json:"workers"`
	Reuseport map[string]uint64 `json:"reuseport,omitempty"`
	// Migrations counts IKE SAs moved between workers after SPU map
	// changes; MapLogical is the logical -> physical map iked follows.
	Migrations uint64 `json:"migrations"`
	MapLogical []int  `json:"map,omitempty"`
}

// WorkerStats describe one worker.
type WorkerStats struct {
	ID     int `json:"id"`
	SPU    int `json:"spu"`
	IKESAs int `json:"ike_sas"`
	// Datagrams that arrived on this worker's sockets, and those handed
	// to it by other workers.
	Datagrams uint64 `json:"datagrams"`
	HandedIn  uint64 `json:"handed_in"`
	// SpudWaitNS is the time the worker spent blocked on SA API calls
	// (nanoseconds since iked started); InstallsInFlight the SA API
	// calls it made and did not wait for (Child SA installs, removals,
	// releases, moves), not yet answered.
	SpudWaitNS       uint64 `json:"spud_wait_ns"`
	InstallsInFlight int64  `json:"installs_in_flight"`
}

// Client talks to iked.
type Client struct {
	c *unixrpc.Client
	// pageFallback counts the encodings of sas.list iked refused (it is
	// older than them): 0 asks for EncodingPackedData, 1 for
	// EncodingPacked, 2 for JSON, on this connection from then on.
	pageFallback atomic.Int32
}

// pageEncodings are what sas.list asks for, by pageFallback.
var pageEncodings = [...]string{EncodingPackedData, EncodingPacked, ""}

// Dial connects to iked's control socket.
func Dial(path string) (*Client, error) {
	c, err := unixrpc.Dial("iked", path)
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// SetTimeout bounds each call.
func (c *Client) SetTimeout(d time.Duration) { c.c.Timeout = d }

// Call sends an operation. An error iked returned reads "iked: op: why" and
// has a *unixrpc.Error in its chain.
func (c *Client) Call(op string, req, reply any) error { return c.c.Call(op, req, reply) }

// CallData is Call for an operation whose reply carries data
// (unixrpc.CallData): it returns that data.
func (c *Client) CallData(op string, req, reply any) ([]byte, error) {
	return c.c.CallData(op, req, reply)
}

// Hello identifies the daemon.
func (c *Client) Hello() (*Hello, error) {
	var h Hello
	return &h, c.Call(OpHello, nil, &h)
}

// Conns lists the connections.
func (c *Client) Conns() ([]Conn, error) {
	var r Conns
	err := c.Call(OpConns, nil, &r)
	return r.Conns, err
}

// SAs lists every IKE SA, page by page.
func (c *Client) SAs() ([]IKESA, error) {
	var out []IKESA
	err := c.SAPages(func(p []IKESA) error {
		out = append(out, p...)
		return nil
	})
	return out, err
}

// SAPage asks for one page: the IKE SAs with a UniqueID above after, at
// most limit.
func (c *Client) SAPage(after uint32, limit int) (*SAs, error) {
	var r SAs
	var data []byte
	var err error
	req := SAsRequest{After: after, Limit: limit}
	for {
		f := c.pageFallback.Load()
		req.Encoding = pageEncodings[f]
		r = SAs{}
		data, err = c.c.CallData(OpSAs, req, &r)
		if err != nil && req.Encoding != "" && olderIked(err) {
			c.pageFallback.CompareAndSwap(f, f+1)
			continue
		}
		break
	}
	if err != nil {
		return &r, err
	}
	if req.Encoding == EncodingPackedData {
		r.Packed = data
	}
	if len(r.Packed) > 0 {
		// The frame's buffer (or base64's), which nothing else holds.
		sas, err := decodePage(r.Packed, make([]IKESA, 0, limit), true)
		if err != nil {
			return &r, fmt.Errorf("iked: %s: %w", OpSAs, err)
		}
		r.IKESAs, r.Packed = sas, nil
	}
	return &r, nil
}

// olderIked reports whether err is an iked's refusal of the request's
// encoding: a field it does not know, or a value.
func olderIked(err error) bool {
	var e *unixrpc.Error
	return errors.As(err, &e) && e.Code == unixrpc.CodeBadRequest &&
		(strings.Contains(e.Message, `unknown field "encoding"`) || strings.HasPrefix(e.Message, "unknown encoding"))
}

// SAPages calls each with every page of IKE SAs in UniqueID order, so that
// a caller can show a million without holding them. The next page is
// asked for while each takes one: iked's building of a page and the
// caller's printing of the one before overlap rather than take turns.
func (c *Client) SAPages(each func([]IKESA) error) error {
	type fetched struct {
		r   *SAs
		err error
	}
	fetch := func(after uint32) <-chan fetched {
		// Buffered: when each fails, the call in flight finishes on its
		// own.
		ch := make(chan fetched, 1)
		go func() {
			r, err := c.SAPage(after, MaxSAsPage)
			ch <- fetched{r, err}
		}()
		return ch
	}
	var after uint32
	next := fetch(after)
	for {
		f := <-next
		if f.err != nil {
			return f.err
		}
		r := f.r
		if r.More && r.Next <= after {
			return fmt.Errorf("iked: %s: the page after %d does not move on (%d)", OpSAs, after, r.Next)
		}
		if r.More {
			after = r.Next
			next = fetch(after)
		}
		if err := each(r.IKESAs); err != nil {
			return err
		}
		if !r.More {
			return nil
		}
	}
}

// Initiate brings up a connection and waits for the outcome.
func (c *Client) Initiate(req Initiate) (*Result, error) {
	var r Result
	return &r, c.Call(OpInitiate, req, &r)
}

// Terminate deletes IKE or Child SAs and waits for the outcome.
func (c *Client) Terminate(req Terminate) (*Result, error) {
	var r Result
	return &r, c.Call(OpTerminate, req, &r)
}

// Rekey starts rekeys.
func (c *Client) Rekey(req Rekey) (*Result, error) {
	var r Result
	return &r, c.Call(OpRekey, req, &r)
}

// Load runs the load initiator and, unless req.Background, waits for its
// outcome (set the client's timeout long enough).
func (c *Client) Load(req Load) (*LoadResult, error) {
	var r LoadResult
	return &r, c.Call(OpLoad, req, &r)
}

// LoadStatus returns the progress of a connection's load run.
func (c *Client) LoadStatus(conn string) (*LoadResult, error) {
	var r LoadResult
	return &r, c.Call(OpLoadStatus, LoadStatus{Conn: conn}, &r)
}

// Reload rereads the configuration.
func (c *Client) Reload() (*ReloadResult, error) {
	var r ReloadResult
	return &r, c.Call(OpReload, nil, &r)
}

// Stats returns the counters.
func (c *Client) Stats() (*Stats, error) {
	var r Stats
	return &r, c.Call(OpStats, nil, &r)
}
