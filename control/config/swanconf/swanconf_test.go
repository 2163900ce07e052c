package swanconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dump writes a tree as "path=value" lines, "path{" for sections, with
// positions, to compare trees in tests.
func dump(s *Section, prefix string, b *strings.Builder) {
	for _, e := range s.Elements {
		p := join(prefix, e.Name)
		switch e.Kind {
		case KindSection:
			b.WriteString(p + "{ " + filepath.Base(e.Pos.File) + ":" + itoa(e.Pos.Line) + "\n")
			dump(e.Section, p, b)
		default:
			b.WriteString(p + "=" + e.Value + " " + filepath.Base(e.Pos.File) + ":" + itoa(e.Pos.Line) + "\n")
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func TestParseSyntax(t *testing.T) {
	src := `# a comment
a = b
section-one {
	somevalue = asdf   # trailing comment
	subsection {
		othervalue = xxx
	}
	# yei, a comment
	yetanother = zz
	empty =
}
section-two
{
  x = 12
  quoted = "with # hash and \"quotes\"\n and a
second line"
  spaces = a b ,  c
  brace { one = 1 }
}
section-one {
	somevalue = replaced
	new = yes
}
`
	root, err := Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	dump(root, "", &b)
	want := `a=b t.conf:2
section-one{ t.conf:3
section-one.somevalue=replaced t.conf:21
section-one.subsection{ t.conf:5
section-one.subsection.othervalue=xxx t.conf:6
section-one.yetanother=zz t.conf:9
section-one.empty= t.conf:10
section-one.new=yes t.conf:22
section-two{ t.conf:12
section-two.x=12 t.conf:14
section-two.quoted=with # hash and "quotes"
 and a
second line t.conf:15
section-two.spaces=a b ,  c t.conf:17
section-two.brace{ t.conf:18
section-two.brace.one=1 t.conf:18
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"a {\n b = c\n", "t.conf: line 1: a: section not closed: missing }"},
		{"a = b\n}\n", "t.conf: line 2: } without a section to close"},
		{"a {\n  b c\n}\n", `t.conf: line 2: a.b: unexpected 'c' after "b": want = or {`},
		{"a {\n  b\n", `t.conf: line 2: a.b: unexpected end of file after "b": want = or {`},
		{"a : base {\n}\n", "t.conf: line 1: a: section references (a : template) are not supported: write the settings out"},
		{"a {\n\n  b = \"open\n\n", "t.conf: line 3: a.b: quoted value not closed: missing \""},
		{"a = \"x\" y\n", `t.conf: line 1: a: unexpected 'y' after the quoted value`},
		{"a {\n}\na = 1\n", "t.conf: line 3: a: is a section (at t.conf: line 1) and a value"},
		{"a = 1\na {\n}\n", "t.conf: line 2: a: is a value (at t.conf: line 1) and a section"},
		{"a.b = 1\n", `t.conf: line 1: a: unexpected '.' after "a": want = or {`},
		{"=1\n", `t.conf: line 1: unexpected '=' where a key or a section name starts`},
		{"include conf.d/*.conf\n", "t.conf: line 1: include conf.d/*.conf: no folder to read it from"},
		{strings.Repeat("a {\n", 40), "t.conf: line 33: " + strings.TrimSuffix(strings.Repeat("a.", 33), ".") + ": sections nested more than 32 deep"},
	} {
		_, err := Parse("t.conf", []byte(tc.src))
		var se *Error
		if err == nil || err.Error() != tc.want || !errors.As(err, &se) {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
}

func TestParseFileIncludes(t *testing.T) {
	dir := t.TempDir()
	w := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// strongswan.conf(5)'s example: three files, one result.
	main := w("main.conf", "a = b\nsection-one {\n  somevalue = before include\n  include include.conf\n}\ninclude other.conf\ninclude conf.d/*.conf\ninclude none.d/*.conf\n")
	w("include.conf", "somevalue = asdf\nsubsection {\n  othervalue = yyy\n}\nyetanother = zz\n")
	w("other.conf", "section-one {\n  subsection {\n    othervalue = xxx\n  }\n}\nsection-two {\n  x = 12\n}\n")
	w("conf.d/b.conf", "section-two {\n  y = from b\n}\n")
	w("conf.d/a.conf", "section-two {\n  y = from a\n  z = 1\n}\n")
	root, err := ParseFile(main)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	dump(root, "", &b)
	want := `a=b main.conf:1
section-one{ main.conf:2
section-one.somevalue=asdf include.conf:1
section-one.subsection{ include.conf:2
section-one.subsection.othervalue=xxx other.conf:3
section-one.yetanother=zz include.conf:5
section-two{ other.conf:6
section-two.x=12 other.conf:7
section-two.y=from b b.conf:2
section-two.z=1 a.conf:3
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	// Errors name the included file and its line.
	w("bad.conf", "x {\n  include inc/bad2.conf\n}\n")
	w("inc/bad2.conf", "\n\ny = \"open\n")
	if _, err := ParseFile(filepath.Join(dir, "bad.conf")); err == nil || err.Error() != filepath.Join(dir, "inc/bad2.conf")+": line 3: x.y: quoted value not closed: missing \"" {
		t.Errorf("error in an included file: %v", err)
	}
	w("missing.conf", "include nothere.conf\n")
	if _, err := ParseFile(filepath.Join(dir, "missing.conf")); err == nil || !strings.Contains(err.Error(), "missing.conf: line 1: include nothere.conf: "+filepath.Join(dir, "nothere.conf")+" does not exist") {
		t.Errorf("missing include: %v", err)
	}
	w("loop.conf", "a {\ninclude loop.conf\n}\n")
	if _, err := ParseFile(filepath.Join(dir, "loop.conf")); err == nil || !strings.Contains(err.Error(), "nested more than 10 deep") {
		t.Errorf("include loop: %v", err)
	}
	if _, err := ParseFile(filepath.Join(dir, "nosuch.conf")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

// TestDocLines: the YAML written for a tree says which element each line
// holds.
func TestDocLines(t *testing.T) {
	root, err := Parse("t.conf", []byte("connections {\n a {\n  local-1 {\n   auth = psk\n  }\n  children {\n   c {\n    esp_proposals = \"x\\\"y\"\n   }\n  }\n }\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var d Doc
	d.Key(0, "connections", nil, "connections")
	if err := d.Conn("a", root.Get("connections").Section.Get("a"), 2, "connections"); err != nil {
		t.Fatal(err)
	}
	want := "\"connections\":\n  \"a\":\n    \"local\":\n      \"auth\": \"psk\"\n    \"children\":\n      \"c\":\n        \"esp_proposals\": \"x\\\"y\"\n"
	if string(d.Bytes()) != want {
		t.Errorf("got\n%s\nwant\n%s", d.Bytes(), want)
	}
	if e, p := d.Line(7); e == nil || e.Pos.Line != 8 || p != "connections.a.children.c.esp_proposals" {
		t.Errorf("line 7: %+v %q", e, p)
	}
	if e, p := d.Line(3); e == nil || e.Pos.Line != 3 || p != "connections.a.local-1" {
		t.Errorf("line 3: %+v %q", e, p)
	}
}

// FuzzParse: the parser reads operator input; whatever the bytes, it
// returns a tree or an error, never panics, and a tree it returns is
// written as YAML without panicking either.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"connections {\n  a {\n    local_addrs = 198.18.0.1\n    children {\n      c {\n        esp_proposals = aes128gcm16\n      }\n    }\n  }\n}\n",
		"a = \"quoted \\\" \\n\nvalue\" # c\n",
		"secrets {\n ike-1 {\n  id-a = a\n  secret = 0x1234\n }\n}\n",
		"a { b { c { d = e } } }\n",
		"include x.conf\n",
		"a : b {\n}\n",
		"}\n{\n=\n\"\n\\",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		root, err := Parse("f.conf", src)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		var d Doc
		d.Section(root, 0, "")
		for _, e := range root.Elements {
			if e.Kind == KindSection {
				_ = d.Conn(e.Name, e, 0, "")
			}
		}
		if len(d.Lines) != strings.Count(string(d.Bytes()), "\n") {
			t.Fatalf("%d lines recorded for %d written", len(d.Lines), strings.Count(string(d.Bytes()), "\n"))
		}
	})
}
