package spud

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/internal/unixrpc"
)

// Capture page bounds: a page stays far below unixrpc.MaxMessage.
const (
	capturePageRecords = 512
	capturePageBytes   = 2 << 20
	captureMaxWait     = 2 * time.Second
	captureDefaultSnap = 2048
)

// captureIdle is how long a capture nobody reads lives, in nanoseconds
// (api.CaptureIdle; tests shorten it).
var captureIdle atomic.Int64

func init() { captureIdle.Store(int64(api.CaptureIdle)) }

// captureState is spud's capture (one at a time), read by one client.
type captureState struct {
	mu     sync.Mutex
	nextID uint64
	cur    *captureSession
}

// captureSession is a running capture and its limits.
type captureSession struct {
	id       uint64
	c        *spu.Capture
	count    int // 0: no limit
	got      int
	deadline time.Time // zero: no limit
	lastRead time.Time
	done     string     // why it ended, once it has
	readMu   sync.Mutex // one reader of c at a time
	recs     []spu.CaptureRecord
	buf      []byte
}

// captureHandlers serves spuctl capture.
func (d *Daemon) captureHandlers() {
	d.srv.Handle(api.OpCaptureStart, func(body json.RawMessage) (any, error) {
		req, err := decode[api.CaptureStart](body)
		if err != nil {
			return nil, err
		}
		return d.startCapture(req)
	})
	d.srv.Handle(api.OpCaptureRead, func(body json.RawMessage) (any, error) {
		req, err := decode[api.CaptureRead](body)
		if err != nil {
			return nil, err
		}
		return d.readCapture(req)
	})
	d.srv.Handle(api.OpCaptureStop, func(body json.RawMessage) (any, error) {
		req, err := decode[api.CaptureRead](body)
		if err != nil {
			return nil, err
		}
		cs := &d.capture
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if cs.cur == nil || cs.cur.id != req.ID {
			return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "capture %d: not running", req.ID)
		}
		d.endCapture(cs.cur, "stopped")
		return nil, nil
	})
}

// tunnelReqID finds the reqid of the SAs named name (or whose name's
// first part, before a slash, is name).
func (d *Daemon) tunnelReqID(name string) (uint32, error) {
	var ids []uint32
	for _, sa := range d.eng.DumpSAs() {
		if sa.Name == name || strings.HasPrefix(sa.Name, name+"/") {
			if !slices.Contains(ids, sa.ReqID) {
				ids = append(ids, sa.ReqID)
			}
		}
	}
	switch len(ids) {
	case 0:
		return 0, unixrpc.Errorf(unixrpc.CodeNotFound, "capture tunnel %q: no SA has this name", name)
	case 1:
		return ids[0], nil
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "capture tunnel %q: its SAs have reqids %v: name one Child SA (conn/child) or give its SPI", name, ids)
}

func (d *Daemon) startCapture(req *api.CaptureStart) (*api.CaptureStarted, error) {
	pts, err := spu.ParsePoints(req.Points)
	if err != nil {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%v", err)
	}
	if req.Count < 0 || req.DurationMS < 0 || req.Snaplen < 0 {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "capture: count %d, duration %dms, snaplen %d: negative", req.Count, req.DurationMS, req.Snaplen)
	}
	f := spu.CaptureFilter{SPI: req.SPI, ReqID: req.ReqID, Points: pts}
	if req.Tunnel != "" {
		if f.ReqID, err = d.tunnelReqID(req.Tunnel); err != nil {
			return nil, err
		}
	}
	snap := req.Snaplen
	if snap == 0 {
		snap = captureDefaultSnap
	}
	cs := &d.capture
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.cur != nil {
		return nil, unixrpc.Errorf(unixrpc.CodeUnavailable, "capture: capture %d is running: one at a time", cs.cur.id)
	}
	c, err := d.eng.StartCapture(f, req.SPUs, snap)
	if err != nil {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%v", err)
	}
	cs.nextID++
	s := &captureSession{id: cs.nextID, c: c, count: req.Count, lastRead: time.Now(),
		recs: make([]spu.CaptureRecord, 0, capturePageRecords), buf: make([]byte, 0, capturePageBytes)}
	if req.DurationMS > 0 {
		s.deadline = time.Now().Add(time.Duration(req.DurationMS) * time.Millisecond)
	}
	cs.cur = s
	go d.watchCapture(s)
	spus := req.SPUs
	if len(spus) == 0 {
		for i := range d.eng.SPUStats() {
			spus = append(spus, i)
		}
	}
	d.log.Info("spud: capture started", "id", s.id, "spus", spus, "spi", f.SPI, "reqid", f.ReqID, "points", req.Points,
		"count", req.Count, "duration_ms", req.DurationMS, "snaplen", snap)
	return &api.CaptureStarted{ID: s.id, SPUs: spus, SPI: f.SPI, ReqID: f.ReqID, Snaplen: snap}, nil
}

// watchCapture stops a capture its client stopped reading (it went away
// without capture.stop) or whose time is up.
func (d *Daemon) watchCapture(s *captureSession) {
	idle := time.Duration(captureIdle.Load())
	t := time.NewTicker(min(time.Second, idle/4))
	defer t.Stop()
	for range t.C {
		cs := &d.capture
		cs.mu.Lock()
		if cs.cur != s {
			cs.mu.Unlock()
			return
		}
		if time.Since(s.lastRead) > idle {
			d.endCapture(s, "idle")
		}
		cs.mu.Unlock()
	}
}

// endCapture stops s; d.capture.mu held.
func (d *Daemon) endCapture(s *captureSession, why string) {
	s.c.Stop()
	s.done = why
	if d.capture.cur == s {
		d.capture.cur = nil
	}
	d.log.Info("spud: capture ended", "id", s.id, "why", why, "packets", s.got, "lost", s.c.Lost())
}

func (d *Daemon) readCapture(req *api.CaptureRead) (any, error) {
	cs := &d.capture
	cs.mu.Lock()
	s := cs.cur
	cs.mu.Unlock()
	if s == nil || s.id != req.ID {
		return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "capture %d: not running", req.ID)
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	wait := min(time.Duration(req.WaitMS)*time.Millisecond, captureMaxWait)
	until := time.Now().Add(wait)
	if !s.deadline.IsZero() && s.deadline.Before(until) {
		until = s.deadline
	}
	var recs []spu.CaptureRecord
	var data []byte
	for {
		limit := capturePageRecords
		if s.count > 0 {
			limit = min(limit, s.count-s.got)
		}
		recs, data = s.c.Read(s.recs[:0:limit], s.buf)
		if len(recs) > 0 || !time.Now().Before(until) {
			break
		}
		// Off the packet path: the SPUs do not wake readers, spud polls.
		time.Sleep(5 * time.Millisecond)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	s.lastRead = time.Now()
	s.got += len(recs)
	page := api.CapturePage{Records: make([]api.CaptureRecord, len(recs)), Lost: s.c.Lost()}
	for i, r := range recs {
		page.Records[i] = api.CaptureRecord{Time: r.Time, SPU: r.SPU, Point: r.Point.String(), Reason: r.Reason(),
			SPI: r.SPI, ReqID: r.ReqID, Len: r.Len, N: r.N}
	}
	switch {
	case s.done != "":
	case s.count > 0 && s.got >= s.count:
		d.endCapture(s, "count")
	case !s.deadline.IsZero() && !time.Now().Before(s.deadline):
		d.endCapture(s, "duration")
	}
	page.Done, page.Why = s.done != "", s.done
	return unixrpc.WithData{Body: page, Data: slices.Clone(data)}, nil
}
