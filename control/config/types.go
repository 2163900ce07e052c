package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// The value types below decode from the YAML node itself, so that an error
// carries the line of the value, and so that a scalar is read as written
// (0x1234 stays a hex string, not a number).

// scalar returns the text of a scalar node as written (quotes removed).
func scalar(n ast.Node) (string, error) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, nil
	case *ast.NullNode:
		return "", nil
	case *ast.TagNode:
		return scalar(n.Value)
	case ast.ScalarNode:
		return n.GetToken().Value, nil
	}
	return "", atLine(n, fmt.Errorf("want a single value"))
}

func atLine(n ast.Node, err error) error {
	if n != nil && n.GetToken() != nil {
		return fmt.Errorf("line %d: %w", n.GetToken().Position.Line, err)
	}
	return err
}

// List is a list of strings written either as a YAML sequence or, as in
// swanctl.conf, as one comma-separated string.
type List []string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (l *List) UnmarshalYAML(n ast.Node) error {
	if seq, ok := n.(*ast.SequenceNode); ok {
		var out []string
		for _, v := range seq.Values {
			s, err := scalar(v)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		*l = trimAll(out)
		return nil
	}
	s, err := scalar(n)
	if err != nil {
		return atLine(n, fmt.Errorf("want a list or a comma-separated string"))
	}
	*l = trimAll(strings.Split(s, ","))
	return nil
}

func trimAll(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Duration is a time in swanctl.conf's syntax: a number of seconds, or a
// number with s, m, h or d.
type Duration time.Duration

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	s, err := scalar(n)
	if err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return atLine(n, err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses swanctl.conf's time syntax.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	unit := time.Second
	switch s[len(s)-1] {
	case 's':
		s = s[:len(s)-1]
	case 'm':
		unit, s = time.Minute, s[:len(s)-1]
	case 'h':
		unit, s = time.Hour, s[:len(s)-1]
	case 'd':
		unit, s = 24*time.Hour, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("duration %q: want a number of seconds or a number with s, m, h or d", orig)
	}
	return time.Duration(v * float64(unit)), nil
}

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a count of bytes or packets: a number, optionally with k, m or g
// (powers of 1024, as strongSwan reads them).
type Size uint64

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (z *Size) UnmarshalYAML(n ast.Node) error {
	orig, err := scalar(n)
	if err != nil {
		return err
	}
	s := strings.TrimSpace(strings.ToLower(orig))
	mult := uint64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k':
			mult, s = 1<<10, s[:len(s)-1]
		case 'm':
			mult, s = 1<<20, s[:len(s)-1]
		case 'g':
			mult, s = 1<<30, s[:len(s)-1]
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return atLine(n, fmt.Errorf("size %q: want a number, optionally with k, m or g", orig))
	}
	*z = Size(v * mult)
	return nil
}

// Bool accepts yes/no as strongSwan writes them, and true/false.
type Bool bool

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (v *Bool) UnmarshalYAML(n ast.Node) error {
	s, err := scalar(n)
	if err != nil {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true", "on", "1":
		*v = true
	case "no", "false", "off", "0":
		*v = false
	default:
		return atLine(n, fmt.Errorf("%q: want yes or no", s))
	}
	return nil
}

// Text is a string read exactly as written, whatever YAML would make of it
// (a secret such as 0x1234 is not a number). Its errors never quote it.
type Text string

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (t *Text) UnmarshalYAML(n ast.Node) error {
	s, err := scalar(n)
	if err != nil {
		return atLine(n, fmt.Errorf("want a single value"))
	}
	*t = Text(s)
	return nil
}
