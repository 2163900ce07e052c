package api

import "time"

// Capture at the SPU (spuctl capture): spud copies what its SPUs see into
// bounded rings and a client reads them page by page.
const (
	// OpCaptureStart starts a capture: CaptureStart -> CaptureStarted. One
	// runs at a time (CodeUnavailable while another does).
	OpCaptureStart = "capture.start"
	// OpCaptureRead takes the next records: CaptureRead -> CapturePage
	// with the packets' bytes as the reply's data (unixrpc.WithData). It
	// waits up to WaitMS for a record. A capture not read for
	// CaptureIdle is stopped (its client went).
	OpCaptureRead = "capture.read"
	// OpCaptureStop stops a capture: CaptureRead (its ID) -> nothing.
	OpCaptureStop = "capture.stop"
)

// CaptureIdle is how long spud keeps a capture nobody reads.
const CaptureIdle = 10 * time.Second

// CaptureStart says what to capture. Zero values take everything.
type CaptureStart struct {
	// SPUs are the SPUs to capture on (none: all).
	SPUs []int `json:"spus,omitempty"`
	// SPI takes one SA's packets, ReqID a Child SA's (every SA of the
	// reqid, across rekeys), Tunnel the Child SA whose SAs have this name
	// (iked's conn/child name, or its first part).
	SPI    uint32 `json:"spi,omitempty"`
	ReqID  uint32 `json:"reqid,omitempty"`
	Tunnel string `json:"tunnel,omitempty"`
	// Points is a comma-separated list of esp-in, clear-out, clear-in,
	// esp-out, drop ("" or "all": every one).
	Points string `json:"points,omitempty"`
	// Count and DurationMS end the capture after this many packets or
	// milliseconds (0: no limit); Snaplen cuts each copy (0: 2048).
	Count      int   `json:"count,omitempty"`
	DurationMS int64 `json:"duration_ms,omitempty"`
	Snaplen    int   `json:"snaplen,omitempty"`
}

// CaptureStarted answers CaptureStart: the capture's id and what it takes.
type CaptureStarted struct {
	ID      uint64 `json:"id"`
	SPUs    []int  `json:"spus"`
	SPI     uint32 `json:"spi,omitempty"`
	ReqID   uint32 `json:"reqid,omitempty"`
	Snaplen int    `json:"snaplen"`
}

// CaptureRead asks for a capture's next records (or stops it).
type CaptureRead struct {
	ID     uint64 `json:"id"`
	WaitMS int    `json:"wait_ms,omitempty"`
}

// CapturePage is a page of records; their bytes follow one another in
// the reply's data, N bytes each.
type CapturePage struct {
	Records []CaptureRecord `json:"records"`
	// Lost counts the copies the SPUs' rings had no room for so far (the
	// packets themselves went on).
	Lost uint64 `json:"lost"`
	// Done says the capture ended (Why: count, duration, stopped).
	Done bool   `json:"done,omitempty"`
	Why  string `json:"why,omitempty"`
}

// CaptureRecord is one packet an SPU saw.
type CaptureRecord struct {
	Time  int64  `json:"time"` // unix nanoseconds
	SPU   int    `json:"spu"`
	Point string `json:"point"` // esp-in, clear-out, clear-in, esp-out or drop
	// Reason is a drop's counter name (unknown_spi, sa_replay, ...).
	Reason string `json:"reason,omitempty"`
	SPI    uint32 `json:"spi,omitempty"`
	ReqID  uint32 `json:"reqid,omitempty"`
	Len    int    `json:"len"` // the packet's length (an IP packet)
	N      int    `json:"n"`   // the bytes captured
}

// CaptureStart starts a capture (spuctl capture).
func (c *Client) CaptureStart(req CaptureStart) (CaptureStarted, error) {
	var r CaptureStarted
	err := c.Call(OpCaptureStart, req, &r)
	return r, err
}

// CaptureRead takes a capture's next page and its packets' bytes.
func (c *Client) CaptureRead(id uint64, wait time.Duration) (*CapturePage, []byte, error) {
	var r CapturePage
	data, err := c.CallData(OpCaptureRead, CaptureRead{ID: id, WaitMS: int(wait / time.Millisecond)}, &r)
	return &r, data, err
}

// CaptureStop stops a capture.
func (c *Client) CaptureStop(id uint64) error { return c.Call(OpCaptureStop, CaptureRead{ID: id}, nil) }
