package manager

import (
	"context"
	"log/slog"
)

// Logger returns the IKE SA's logger: the worker's, with the IKE SA's
// attributes (ike_id, conn, spis, peer) first on each line. They are taken
// when a line is written, from the IKE SA as it is then, rather than kept:
// a logger made by With for each IKE SA held its attributes formatted (a
// tenth of what an established IKE SA cost at a million), and had to be
// made again whenever the SPIs or the peer's address changed.
func (m *Manager) Logger() *slog.Logger { return slog.New((*logHandler)(m)) }

// logHandler is a Manager as the handler of its logger.
type logHandler Manager

func (h *logHandler) inner() slog.Handler { return h.env.Log().Handler() }

// attrs are the IKE SA's attributes, in the order lines always had them.
func (h *logHandler) attrs() []slog.Attr {
	ike := h.IKE
	return []slog.Attr{slog.Any("ike_id", ike.UniqueID), slog.String("conn", ike.ConnName),
		slog.String("spis", ike.SPIs()), slog.String("peer", ike.Remote.String())}
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner().Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner().Handle(ctx, withFirst(r, h.attrs(), nil))
}

// WithAttrs keeps the attributes after the IKE SA's (child_create's
// lines With their extra attributes).
func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &withHandler{m: (*Manager)(h), with: as}
}

// WithGroup, which nothing uses, takes the IKE SA's attributes as they are.
func (h *logHandler) WithGroup(name string) slog.Handler {
	return h.inner().WithAttrs(h.attrs()).WithGroup(name)
}

// withHandler is a Manager's logHandler with attributes added.
type withHandler struct {
	m    *Manager
	with []slog.Attr
}

func (h *withHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return (*logHandler)(h.m).Enabled(ctx, l)
}

func (h *withHandler) Handle(ctx context.Context, r slog.Record) error {
	lh := (*logHandler)(h.m)
	return lh.inner().Handle(ctx, withFirst(r, lh.attrs(), h.with))
}

func (h *withHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &withHandler{m: h.m, with: append(h.with[:len(h.with):len(h.with)], as...)}
}

func (h *withHandler) WithGroup(name string) slog.Handler {
	lh := (*logHandler)(h.m)
	return lh.inner().WithAttrs(lh.attrs()).WithAttrs(h.with).WithGroup(name)
}

// withFirst returns r with first and then more before its own attributes,
// where a handler's With would have put them.
func withFirst(r slog.Record, first, more []slog.Attr) slog.Record {
	n := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	n.AddAttrs(first...)
	n.AddAttrs(more...)
	r.Attrs(func(a slog.Attr) bool { n.AddAttrs(a); return true })
	return n
}
