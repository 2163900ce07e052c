package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"sort"
	"strconv"
	"strings"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// listPages prints a dump page by page as spud gives it (in install order),
// so that a table of any size lists in the memory of a page, as text
// (print) or one JSON object a line (appendJSON: json.Marshal's bytes).
// SAs that spud could not read (api.Incomplete) are said in a last line,
// "# N SAs not listed: why" or {"missing":N,"missing_reason":why}, and
// the listing fails.
func listPages[T any](out io.Writer, pages iter.Seq2[[]T, error], asJSON bool, print func(*bufio.Writer, T),
	appendJSON func([]byte, *T) ([]byte, error)) error {
	w := bufio.NewWriterSize(out, 64<<10)
	for page, err := range pages {
		if err != nil {
			var inc *api.Incomplete
			if errors.As(err, &inc) {
				if asJSON {
					b, _ := json.Marshal(struct {
						Missing       int    `json:"missing"`
						MissingReason string `json:"missing_reason"`
					}{inc.Missing, inc.Reason})
					w.Write(append(b, '\n'))
				} else {
					fmt.Fprintf(w, "# %d SAs not listed: %s\n", inc.Missing, inc.Reason)
				}
			}
			w.Flush()
			return err
		}
		for i := range page {
			if asJSON {
				b, err := appendJSON(w.AvailableBuffer(), &page[i])
				if err != nil {
					w.Flush()
					return err
				}
				w.Write(append(b, '\n'))
			} else {
				print(w, page[i])
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// marshalJSON is listPages's appendJSON for the listings without their
// own: encoding/json.
func marshalJSON[T any](b []byte, x *T) ([]byte, error) { return appendMarshal(b, *x) }

// printSA writes an SA as two or three lines; with strconv's appends, not
// fmt's, since a listing of a million SAs spends its time here.
func printSA(w *bufio.Writer, s api.SAState) {
	src, dst := s.Local, s.Remote
	if s.Dir == api.In {
		src, dst = dst, src
	}
	b := w.AvailableBuffer()
	b = append(b, "sa 0x"...)
	b = appendHex8(b, s.SPI)
	b = append(b, ' ')
	b = append(b, s.Dir...)
	for n := len(s.Dir); n < 3; n++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	b = src.AppendTo(b)
	b = append(b, " -> "...)
	b = dst.AppendTo(b)
	b = append(b, ' ')
	b = append(b, s.Suite.String()...)
	b = append(b, ' ')
	b = append(b, s.Mode...)
	b = append(b, " reqid "...)
	b = strconv.AppendUint(b, uint64(s.ReqID), 10)
	b = append(b, " spu "...)
	b = strconv.AppendInt(b, int64(s.SPU), 10)
	b = append(b, " (logical "...)
	if s.Logical == nil {
		b = append(b, '?')
	} else {
		b = strconv.AppendInt(b, int64(*s.Logical), 10)
	}
	b = append(b, ')')
	if s.Encap != nil {
		b = append(b, " udp-encap "...)
		b = strconv.AppendUint(b, uint64(s.Encap.LocalPort), 10)
		b = append(b, "->"...)
		b = strconv.AppendUint(b, uint64(s.Encap.RemotePort), 10)
	}
	if s.ESN {
		b = append(b, " esn"...)
	}
	if s.Dir == api.Out && s.Active {
		b = append(b, " active"...)
	}
	if s.Name != "" {
		b = append(b, ' ')
		b = append(b, s.Name...)
	}
	b = append(b, "\n    packets "...)
	b = strconv.AppendUint(b, s.Stats.Packets, 10)
	b = append(b, " bytes "...)
	b = strconv.AppendUint(b, s.Stats.Bytes, 10)
	b = append(b, " seq "...)
	b = strconv.AppendUint(b, s.Stats.Seq, 10)
	if len(s.Stats.Drops) > 0 {
		b = append(b, " drops: "...)
		b = append(b, kv(s.Stats.Drops)...)
	}
	b = append(b, '\n')
	if len(s.LocalTS)+len(s.RemoteTS) > 0 {
		b = append(b, "    selectors "...)
		b = appendSelectors(b, s.LocalTS)
		b = append(b, " === "...)
		b = appendSelectors(b, s.RemoteTS)
		b = append(b, '\n')
	}
	w.Write(b)
}

// appendHex8 appends v as %08x does.
func appendHex8(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for i := 28; i >= 0; i -= 4 {
		b = append(b, digits[v>>uint(i)&0xf])
	}
	return b
}

func tsList(ts []ipsec.Selector) string {
	if len(ts) == 0 {
		return "any"
	}
	return ipsec.Selectors(ts)
}

func kv(m map[string]uint64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var p []string
	for _, k := range keys {
		p = append(p, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(p, " ")
}

func printPolicy(w *bufio.Writer, p api.PolicyState) {
	fmt.Fprintf(w, "policy %d %s %s === %s", p.ID, p.Action, tsList(p.LocalTS), tsList(p.RemoteTS))
	if p.Action == api.Protect {
		fmt.Fprintf(w, " tunnel %s -> %s reqid %d", p.Local, p.Remote, p.ReqID)
		if p.OutSPI != 0 {
			fmt.Fprintf(w, " sa 0x%08x", p.OutSPI)
		} else {
			fmt.Fprintf(w, " no sa")
		}
	}
	fmt.Fprintf(w, " spu %d (logical %s) packets %d acquires %d\n", p.SPU, logical(p.Logical), p.Packets, p.Acquires)
}

// logical shows a dump's logical SPU, which spud always fills in; "?" for
// a spud that did not.
func logical(l *int) string {
	if l == nil {
		return "?"
	}
	return strconv.Itoa(*l)
}

// ranges writes 0,1,2,3,7 as 0-3,7.
func ranges(l []int) string {
	var p []string
	for i := 0; i < len(l); {
		j := i
		for j+1 < len(l) && l[j+1] == l[j]+1 {
			j++
		}
		if j > i {
			p = append(p, fmt.Sprintf("%d-%d", l[i], l[j]))
		} else {
			p = append(p, strconv.Itoa(l[i]))
		}
		i = j + 1
	}
	return strings.Join(p, ",")
}
