package vici

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
)

// IKEUpDown raises ike-updown for an IKE SA that came up (established)
// or went down, with its Child SAs, as charon does: {up: yes, <name>
// {...}}, without the up key for down.
func (s *Server) IKEUpDown(ike *ikectl.IKESA, up bool) {
	if !s.Subscribed(EvIKEUpDown) {
		return
	}
	m := &Section{}
	if up {
		m.Set("up", "yes")
	}
	IKESA(m, ike, time.Now())
	s.Publish(EvIKEUpDown, m)
}

// ChildUpDown raises child-updown for a Child SA installed or deleted:
// its IKE SA with that Child SA alone in child-sas.
func (s *Server) ChildUpDown(ike *ikectl.IKESA, child *ikectl.ChildSA, up bool) {
	if !s.Subscribed(EvChildUpDown) {
		return
	}
	m := &Section{}
	if up {
		m.Set("up", "yes")
	}
	one := *ike
	one.Children = []ikectl.ChildSA{*child}
	IKESA(m, &one, time.Now())
	s.Publish(EvChildUpDown, m)
}

// IKERekey raises ike-rekey: {<name> {old {...}, new {...}}}, the IKE
// SA rekeyed and the one that replaced it.
func (s *Server) IKERekey(old, new *ikectl.IKESA) {
	if !s.Subscribed(EvIKERekey) {
		return
	}
	now := time.Now()
	m := &Section{}
	sec := m.AddSection(old.Conn)
	for _, p := range []struct {
		key string
		ike *ikectl.IKESA
	}{{"old", old}, {"new", new}} {
		tmp := &Section{}
		IKESA(tmp, p.ike, now)
		sec.Elements = append(sec.Elements, Element{Name: p.key, Kind: KindSection, Section: tmp.Elements[0].Section})
	}
	s.Publish(EvIKERekey, m)
}

// ChildRekey raises child-rekey: the IKE SA, and in child-sas the
// child's section {old {...}, new {...}}.
func (s *Server) ChildRekey(ike *ikectl.IKESA, old, new *ikectl.ChildSA) {
	if !s.Subscribed(EvChildRekey) {
		return
	}
	now := time.Now()
	m := &Section{}
	bare := *ike
	bare.Children = nil
	sec := IKESA(m, &bare, now)
	cs := sec.Sub("child-sas")
	ch := cs.AddSection(old.Name)
	childKeys(ch.AddSection("old"), old, now)
	childKeys(ch.AddSection("new"), new, now)
	s.Publish(EvChildRekey, m)
}

// LogHandler returns a slog.Handler that passes every record to next and,
// while a client is registered for log, raises a log event for each
// record at info or above as charon does: {group, level, thread, msg,
// ikesa-name, ikesa-uniqueid}, the level charon's (0 for errors and
// warnings, 1 for info), the thread iked's worker, the record's attributes
// appended to msg as key=value.
func (s *Server) LogHandler(next slog.Handler) slog.Handler {
	return &logHandler{s: s, next: next}
}

type logHandler struct {
	s     *Server
	next  slog.Handler
	attrs []slog.Attr
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.next.Enabled(ctx, l) {
		return true
	}
	return l >= slog.LevelInfo && h.s.Subscribed(EvLog)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if r.Level >= slog.LevelInfo && h.s.Subscribed(EvLog) {
		h.s.Publish(EvLog, logEvent(r, h.attrs))
	}
	return err
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{s: h.s, next: h.next.WithAttrs(as), attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{s: h.s, next: h.next.WithGroup(name), attrs: h.attrs}
}

func logEvent(r slog.Record, attrs []slog.Attr) *Section {
	level := "1"
	switch {
	case r.Level >= slog.LevelWarn:
		level = "0"
	case r.Level < slog.LevelInfo:
		level = "2"
	}
	msg := []byte(r.Message)
	var ikeName, ikeID string
	thread := "0"
	add := func(a slog.Attr) bool {
		switch a.Key {
		case "worker":
			// iked's workers are its threads, as charon's are.
			thread = a.Value.String()
		case "conn":
			ikeName = a.Value.String()
		case "ike_id":
			ikeID = a.Value.String()
		}
		msg = append(msg, ' ')
		msg = append(msg, a.Key...)
		msg = append(msg, '=')
		msg = append(msg, a.Value.String()...)
		return true
	}
	for _, a := range attrs {
		add(a)
	}
	r.Attrs(add)
	m := (&Section{}).Set("group", "IKE").Set("level", level).Set("thread", thread)
	if ikeName != "" {
		m.Set("ikesa-name", ikeName)
	}
	if ikeID != "" {
		if _, err := strconv.ParseUint(ikeID, 10, 32); err == nil {
			m.Set("ikesa-uniqueid", ikeID)
		}
	}
	if len(msg) > 0xffff {
		msg = msg[:0xffff]
	}
	return m.Set("msg", string(msg))
}
