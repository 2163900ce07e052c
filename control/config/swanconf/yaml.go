package swanconf

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Doc is a tree written as iked's YAML, every key and value quoted, so
// that iked's own parser and checks read it and an unknown or
// unsupported key is the same error as in a YAML file. Lines[i] is the
// element written on line i+1 (nil for lines that hold none) and
// Paths[i] its key path, so that an error about a line of the YAML can
// name the element and where it was written instead.
type Doc struct {
	b     strings.Builder
	Lines []*Element
	Paths []string
}

// Bytes returns the YAML written so far.
func (d *Doc) Bytes() []byte { return []byte(d.b.String()) }

// Line returns the element and the key path of line n (1-based) of the
// document, or nil and "".
func (d *Doc) Line(n int) (*Element, string) {
	if n < 1 || n > len(d.Lines) {
		return nil, ""
	}
	return d.Lines[n-1], d.Paths[n-1]
}

func (d *Doc) line(indent int, text string, e *Element, path string) {
	d.b.WriteString(strings.Repeat(" ", indent))
	d.b.WriteString(text)
	d.b.WriteByte('\n')
	d.Lines = append(d.Lines, e)
	d.Paths = append(d.Paths, path)
}

// Key writes a mapping key alone on its line (a section's name).
func (d *Doc) Key(indent int, name string, e *Element, path string) {
	d.line(indent, Quote(name)+":", e, path)
}

// Quote writes s as a YAML double-quoted string.
func Quote(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted one
	return string(b)
}

// Section writes the elements of s at indent, their paths under path.
func (d *Doc) Section(s *Section, indent int, path string) {
	for _, e := range s.Elements {
		d.Element(e, e.Name, indent, path)
	}
}

// Element writes e under the key name (iked's name for it, which may
// differ from e.Name), its path under path.
func (d *Doc) Element(e *Element, name string, indent int, path string) {
	p := join(path, e.Name)
	switch e.Kind {
	case KindValue:
		d.line(indent, Quote(name)+": "+Quote(e.Value), e, p)
	case KindList:
		items := make([]string, len(e.List))
		for i, it := range e.List {
			items[i] = Quote(it)
		}
		d.line(indent, Quote(name)+": ["+strings.Join(items, ", ")+"]", e, p)
	case KindSection:
		if len(e.Section.Elements) == 0 {
			d.line(indent, Quote(name)+": {}", e, p)
			return
		}
		d.Key(indent, name, e, p)
		d.Section(e.Section, indent+2, p)
	}
}

// Conn writes a swanctl connection (connections.<name>'s section) as an
// entry of iked's connections at indent: swanctl's local<suffix> and
// remote<suffix> sections are iked's local and remote, of which iked has
// one authentication round each (a second is an error naming both).
func (d *Doc) Conn(name string, c *Element, indent int, path string) error {
	p := join(path, name)
	rounds := map[string]*Element{}
	for _, e := range c.Section.Elements {
		if e.Kind != KindSection {
			continue
		}
		for _, side := range []string{"local", "remote"} {
			if e.Name == side || strings.HasPrefix(e.Name, side) && !strings.HasPrefix(e.Name, side+"_") {
				if prev, ok := rounds[side]; ok {
					return &Error{Pos: e.Pos, Path: join(p, e.Name),
						Msg: fmt.Sprintf("%s and %s: iked has one %s authentication round", prev.Name, e.Name, side)}
				}
				rounds[side] = e
			}
		}
	}
	d.Key(indent, name, c, p)
	for _, e := range c.Section.Elements {
		n := e.Name
		if e.Kind == KindSection {
			for side, r := range rounds {
				if r == e {
					n = side
				}
			}
		}
		d.Element(e, n, indent+2, p)
	}
	return nil
}
