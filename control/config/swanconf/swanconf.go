// Package swanconf reads strongSwan's settings syntax, the one of
// swanctl.conf(5) and strongswan.conf(5): sections `name { ... }`, values
// `key = value` ended by the line, `#` comments, double-quoted values with
// backslash escapes (which may span lines), and `include PATTERN` (a glob
// relative to the including file's folder) whose settings go into the
// section the statement is in. A section written twice is one section
// (the later settings extend it), a key written twice keeps its last
// value, as strongSwan merges them.
//
// The tree keeps where each element was written, so that whoever reads
// the settings (control/config, which maps swanctl.conf's connections and
// secrets onto iked's configuration) can name the file and line of a
// value it refuses. The package also writes a tree as iked's YAML (see
// Doc), the one mapping of swanctl's keys that both the file and VICI's
// load-conn use.
//
// Section references (`name : template { ... }`) are refused with an
// error rather than read without their inherited settings.
package swanconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Pos is where an element was written.
type Pos struct {
	File string
	Line int
}

// String is "FILE: line N", as errors write it.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s: line %d", p.File, p.Line)
}

// Kind tells what an Element is.
type Kind uint8

// The kinds of elements: a value (key = value), a list (VICI's lists;
// the file writes lists as one comma-separated value), a section.
const (
	KindValue Kind = iota + 1
	KindList
	KindSection
)

// Element is a key and its value, or a named section.
type Element struct {
	Name    string
	Kind    Kind
	Value   string   // KindValue
	List    []string // KindList
	Section *Section // KindSection
	Pos     Pos
}

// Section is a section's elements in the order they were first written.
type Section struct {
	Elements []*Element
}

// Get returns the element named name, or nil.
func (s *Section) Get(name string) *Element {
	if s == nil {
		return nil
	}
	for _, e := range s.Elements {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Error is a syntax error, or an error about an element: its position, the
// key path from the top (dot-separated, as swanctl.conf(5) names keys)
// and the cause.
type Error struct {
	Pos  Pos
	Path string
	Msg  string
}

// Error reads "FILE: line N: key.path: cause", leaving out what is not known.
func (e *Error) Error() string {
	var parts []string
	if e.Pos.File != "" {
		parts = append(parts, e.Pos.String())
	}
	if e.Path != "" {
		parts = append(parts, e.Path)
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// maxIncludeDepth bounds nested includes: a file that includes itself is
// a loop, not a reason to run out of memory.
const maxIncludeDepth = 10

// maxNesting bounds how deep sections nest (swanctl.conf's go 5 deep), so
// that a hostile file cannot exhaust the stack.
const maxNesting = 32

// maxFileSize bounds what one file may hold; a configuration is kilobytes.
const maxFileSize = 16 << 20

// ParseFile reads the settings file at path and, through its include
// statements, the files it names.
func ParseFile(path string) (*Section, error) {
	root := &Section{}
	p := &parser{fs: true}
	if err := p.file(path, root, "", 0); err != nil {
		return nil, err
	}
	return root, nil
}

// Parse reads settings from memory; name stands for the file in
// positions. An include statement is an error, since there is no folder
// to resolve it in.
func Parse(name string, src []byte) (*Section, error) {
	root := &Section{}
	p := &parser{}
	if err := p.parse(name, src, root, "", 0); err != nil {
		return nil, err
	}
	return root, nil
}

type parser struct {
	fs bool
}

func (p *parser) file(path string, into *Section, prefix string, depth int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxFileSize {
		return fmt.Errorf("%s: %d bytes, more than a configuration holds (%d)", path, fi.Size(), maxFileSize)
	}
	src := make([]byte, fi.Size())
	if _, err := f.ReadAt(src, 0); err != nil && fi.Size() > 0 {
		return fmt.Errorf("%s: %w", path, err)
	}
	return p.parse(path, src, into, prefix, depth)
}

// scanner walks one file's text.
type scanner struct {
	name string
	src  []byte
	off  int
	line int
}

func (s *scanner) errf(line int, path, format string, args ...any) error {
	return &Error{Pos: Pos{File: s.name, Line: line}, Path: path, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) peek() byte {
	if s.off < len(s.src) {
		return s.src[s.off]
	}
	return 0
}

// skipBlank skips spaces and tabs (and carriage returns), and with nl
// also newlines and comments.
func (s *scanner) skipBlank(nl bool) {
	for s.off < len(s.src) {
		switch c := s.src[s.off]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.off++
		case nl && c == '\n':
			s.off++
			s.line++
		case nl && c == '#':
			for s.off < len(s.src) && s.src[s.off] != '\n' {
				s.off++
			}
		default:
			return
		}
	}
}

// nameChar reports whether c may be in a section name or key
// (strongswan.conf(5): any printable character except . , : { } = " #
// and white space).
func nameChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(".,:{}=\"#", rune(c))
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// parse reads src into the section into, whose key path is prefix.
func (p *parser) parse(name string, src []byte, into *Section, prefix string, depth int) error {
	s := &scanner{name: name, src: src, line: 1}
	if err := p.body(s, into, prefix, depth, 0); err != nil {
		return err
	}
	return nil
}

// body reads settings up to the end of the text (open == 0) or up to the
// closing brace of the section opened at line open.
func (p *parser) body(s *scanner, sec *Section, prefix string, depth, open int) error {
	for {
		s.skipBlank(true)
		if s.off >= len(s.src) {
			if open > 0 {
				return s.errf(open, prefix, "section not closed: missing }")
			}
			return nil
		}
		c := s.peek()
		if c == '}' {
			if open == 0 {
				return s.errf(s.line, prefix, "} without a section to close")
			}
			s.off++
			return nil
		}
		if !nameChar(c) {
			return s.errf(s.line, prefix, "unexpected %q where a key or a section name starts", c)
		}
		start, line := s.off, s.line
		for s.off < len(s.src) && nameChar(s.src[s.off]) {
			s.off++
		}
		key := string(s.src[start:s.off])
		path := join(prefix, key)
		if key == "include" {
			s.skipBlank(false)
			if c := s.peek(); c != '=' && c != '{' {
				if err := p.include(s, sec, prefix, depth, line); err != nil {
					return err
				}
				continue
			}
		}
		s.skipBlank(true)
		switch s.peek() {
		case '=':
			s.off++
			v, err := s.value(path)
			if err != nil {
				return err
			}
			if err := set(sec, &Element{Name: key, Kind: KindValue, Value: v, Pos: Pos{s.name, line}}, path); err != nil {
				return err
			}
		case '{':
			s.off++
			if strings.Count(path, ".") >= maxNesting {
				return s.errf(line, path, "sections nested more than %d deep", maxNesting)
			}
			sub, err := section(sec, key, Pos{s.name, line}, path)
			if err != nil {
				return err
			}
			if err := p.body(s, sub, path, depth, line); err != nil {
				return err
			}
		case ':':
			return s.errf(line, path, "section references (%s : template) are not supported: write the settings out", key)
		case 0:
			return s.errf(line, path, "unexpected end of file after %q: want = or {", key)
		default:
			return s.errf(s.line, path, "unexpected %q after %q: want = or {", s.peek(), key)
		}
	}
}

// value reads what follows "=": an unquoted value to the end of the line
// (or a comment, or a closing brace), trimmed, or a quoted one.
func (s *scanner) value(path string) (string, error) {
	s.skipBlank(false)
	if s.peek() != '"' {
		start := s.off
		for s.off < len(s.src) && s.src[s.off] != '\n' && s.src[s.off] != '#' && s.src[s.off] != '}' {
			s.off++
		}
		return strings.TrimSpace(string(s.src[start:s.off])), nil
	}
	line := s.line
	s.off++
	var b strings.Builder
	for {
		if s.off >= len(s.src) {
			return "", s.errf(line, path, "quoted value not closed: missing \"")
		}
		c := s.src[s.off]
		s.off++
		switch c {
		case '"':
			s.skipBlank(false)
			if c := s.peek(); c != 0 && c != '\n' && c != '#' && c != '}' {
				return "", s.errf(s.line, path, "unexpected %q after the quoted value", c)
			}
			return b.String(), nil
		case '\n':
			s.line++
			b.WriteByte(c)
		case '\\':
			if s.off >= len(s.src) {
				continue
			}
			e := s.src[s.off]
			s.off++
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\n':
				// A backslash at the end of a line continues the value.
				s.line++
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
}

// include reads the files an include statement names into sec.
func (p *parser) include(s *scanner, sec *Section, prefix string, depth, line int) error {
	v, err := s.value(join(prefix, "include"))
	if err != nil {
		return err
	}
	if v == "" {
		return s.errf(line, prefix, "include without a file")
	}
	if !p.fs {
		return s.errf(line, prefix, "include %s: no folder to read it from", v)
	}
	if depth >= maxIncludeDepth {
		return s.errf(line, prefix, "include %s: nested more than %d deep (does it include itself?)", v, maxIncludeDepth)
	}
	pattern := v
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(s.name), pattern)
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return s.errf(line, prefix, "include %s: %v", v, err)
	}
	if len(matches) == 0 && !strings.ContainsAny(v, "*?[") {
		return s.errf(line, prefix, "include %s: %s does not exist", v, pattern)
	}
	for _, m := range matches {
		if err := p.file(m, sec, prefix, depth+1); err != nil {
			var se *Error
			if errors.As(err, &se) {
				return err
			}
			return s.errf(line, prefix, "include %s: %v", v, err)
		}
	}
	return nil
}

// set adds a value, or replaces the value of the same key.
func set(sec *Section, e *Element, path string) error {
	if old := sec.Get(e.Name); old != nil {
		if old.Kind == KindSection {
			return &Error{Pos: e.Pos, Path: path, Msg: fmt.Sprintf("is a section (at %s) and a value", old.Pos)}
		}
		*old = *e
		return nil
	}
	sec.Elements = append(sec.Elements, e)
	return nil
}

// section returns the section named name of sec, made if new.
func section(sec *Section, name string, pos Pos, path string) (*Section, error) {
	if old := sec.Get(name); old != nil {
		if old.Kind != KindSection {
			return nil, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf("is a value (at %s) and a section", old.Pos)}
		}
		return old.Section, nil
	}
	sub := &Section{}
	sec.Elements = append(sec.Elements, &Element{Name: name, Kind: KindSection, Section: sub, Pos: pos})
	return sub, nil
}
