package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/spugate/spugate/internal/version"
)

// noDaemons are global flags naming sockets where nothing listens.
func noDaemons(t *testing.T) []string {
	dir := t.TempDir()
	return []string{"-s", filepath.Join(dir, "spud.sock"), "-c", filepath.Join(dir, "iked.sock")}
}

// commandPaths lists every command of the tree, as the words that run
// it ("sa list"), the root as "".
func commandPaths() []string {
	var paths []string
	var walk func(c *cobra.Command, prefix []string)
	walk = func(c *cobra.Command, prefix []string) {
		paths = append(paths, strings.Join(prefix, " "))
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				walk(sub, append(slices.Clone(prefix), sub.Name()))
			}
		}
	}
	a := &app{}
	walk(a.newRoot(), nil)
	return paths
}

// Every command's help, by --help, -h, the Go-style -help and spuctl help
// CMD, prints without a daemon and exits 0: its usage line, its
// description, and for the commands that do something, examples.
func TestHelpWithoutDaemon(t *testing.T) {
	paths := commandPaths()
	for _, want := range []string{"sa add", "sa del", "sa list", "policy add", "policy del", "policy list", "spu list", "spu drain",
		"spu add", "spu fail", "status", "stats", "list-conns", "list-sas", "initiate", "terminate", "rekey", "load-initiate",
		"load-status", "reload", "ike-stats", "pki ca", "pki issue", "version", "completion bash"} {
		if !slices.Contains(paths, want) {
			t.Errorf("no command %q in the tree: %q", want, paths)
		}
	}
	root := (&app{}).newRoot()
	for _, p := range paths {
		words := strings.Fields(p)
		cmd, _, err := root.Find(words)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Short == "" {
			t.Errorf("spuctl %s: no Short", p)
		}
		if cmd.Runnable() && cmd.Example == "" && cmd.Parent() != nil && cmd.Name() != "help" && cmd.Parent().Name() != "completion" {
			t.Errorf("spuctl %s: no Example", p)
		}
		asks := [][]string{append(slices.Clone(words), "--help"), append(slices.Clone(words), "-h"), append(slices.Clone(words), "-help")}
		if p != "" {
			asks = append(asks, append([]string{"help"}, words...))
		}
		for _, args := range asks {
			code, out, errOut := spuctl(append(noDaemons(t), args...)...)
			if code != 0 || errOut != "" {
				t.Errorf("spuctl %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
				continue
			}
			if !strings.Contains(out, "Usage:\n  "+cmd.UseLine()) {
				t.Errorf("spuctl %s: no usage line %q in:\n%s", strings.Join(args, " "), cmd.UseLine(), out)
			}
		}
	}
}

// Usage errors exit 2 with one line on stderr that names the command,
// and print nothing on stdout; nothing is dialed.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "want a command"},
		{[]string{"bogus"}, `unknown command "bogus" for "spuctl"`},
		{[]string{"stat"}, `unknown command "stat" for "spuctl" (Did you mean this? `},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"sa"}, "spuctl sa: want a subcommand: add, del, list"},
		{[]string{"sa", "bogus"}, `unknown command "bogus" for "spuctl sa"`},
		{[]string{"sa", "list", "extra"}, `unknown command "extra" for "spuctl sa list"`},
		{[]string{"sa", "list", "-o", "yaml"}, `--output "yaml": want text or json`},
		{[]string{"sa", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"sa", "add", "src", "198.18.0.1"}, "spuctl sa add: "},
		{[]string{"sa", "del", "spi"}, "requires at least 2 arg(s)"},
		{[]string{"sa", "del", "spi", "x"}, `spi "x": want a number`},
		{[]string{"sa", "del", "dir", "in", "spi", "1", "dst"}, "keyword-value pairs"},
		{[]string{"policy", "del"}, "accepts 1 arg(s), received 0"},
		{[]string{"policy", "del", "x"}, `policy id "x"`},
		{[]string{"policy", "add", "dir", "out"}, "spuctl policy add: "},
		{[]string{"spu", "drain"}, "accepts 1 arg(s), received 0"},
		{[]string{"spu", "drain", "x"}, `"x" is not an SPU number`},
		{[]string{"spu", "bogus"}, `unknown command "bogus" for "spuctl spu"`},
		{[]string{"status", "extra"}, "unknown command"},
		{[]string{"stats", "-o"}, "flag needs an argument"},
		{[]string{"list-sas", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"list-sas", "-count", "3"}, "unknown flag: --count"},
		{[]string{"initiate"}, "name the connection"},
		{[]string{"initiate", "a", "b", "c"}, "accepts at most 2 arg(s), received 3"},
		{[]string{"initiate", "tun", "--timeout", "soon"}, `invalid argument "soon"`},
		{[]string{"terminate"}, "name the connection or --ike-id"},
		{[]string{"rekey"}, "name the connection or --ike-id"},
		{[]string{"load-initiate", "tun"}, `required flag(s) "count" not set`},
		{[]string{"load-initiate", "tun", "--count", "0"}, "name the connection and a count"},
		{[]string{"help", "bogus"}, `unknown help topic "bogus"`},
		{[]string{"help", "sa", "bogus"}, `unknown help topic "sa bogus"`},
		{[]string{"load-initiate", "tun", "-count", "x"}, `invalid argument "x"`},
		{[]string{"load-status"}, "name the connection"},
		{[]string{"reload", "now"}, "unknown command"},
		{[]string{"ike-stats", "-o", "xml"}, "want text or json"},
		{[]string{"pki"}, "want a subcommand: ca, issue"},
		{[]string{"pki", "ca"}, "accepts 1 arg(s), received 0"},
		{[]string{"version", "x"}, "unknown command"},
		{[]string{"completion"}, "want a subcommand"},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh"`},
	} {
		code, out, errOut := spuctl(append(noDaemons(t), c.args...)...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.want) || !strings.HasPrefix(errOut, "spuctl") {
			t.Errorf("spuctl %s: exit %d (want 2), stdout %q, stderr %q (want one line with %q)", strings.Join(c.args, " "), code, out, errOut, c.want)
		}
	}
}

// A daemon that is not there is a failure (exit 1) whose one line names
// the daemon, what it is and its socket, and the system's reason.
func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	spud, iked := filepath.Join(dir, "spud.sock"), filepath.Join(dir, "iked.sock")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sa", "list"}, "spuctl sa list: spud (SA API) at " + spud + ": connect: no such file or directory"},
		{[]string{"sa", "del", "spi", "0x5002"}, "spud (SA API) at " + spud},
		{[]string{"spu"}, "spud (SA API) at " + spud},
		{[]string{"status", "-json"}, "spud (SA API) at " + spud},
		{[]string{"initiate", "tun"}, "spuctl initiate: iked (control socket) at " + iked + ": connect: no such file or directory"},
		{[]string{"list-sas"}, "iked (control socket) at " + iked},
		{[]string{"load-initiate", "tun", "-count", "30", "-window", "8"}, "iked (control socket) at " + iked},
		{[]string{"ike-stats"}, "iked (control socket) at " + iked},
	} {
		code, out, errOut := spuctl(append([]string{"-s", spud, "-c", iked}, c.args...)...)
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("spuctl %s: exit %d (want 1), stdout %q, stderr %q (want one line with %q)", strings.Join(c.args, " "), code, out, errOut, c.want)
		}
	}
}

// The Go-flag style callers use is read as pflag's double-dash flags;
// shorthands, values, positional words and what follows -- are kept.
func TestCompatArgs(t *testing.T) {
	root := (&app{}).newRoot()
	for _, c := range []struct{ in, want string }{
		{"load-initiate tun -count 30 -window 8", "load-initiate tun --count 30 --window 8"},
		{"load-initiate tun -count=30 -background -load-timeout 2m", "load-initiate tun --count=30 --background --load-timeout 2m"},
		{"-s /s -c /c initiate tun", "-s /s -c /c initiate tun"},
		{"-spud-socket /s list-sas -json", "--spud-socket /s list-sas --json"},
		{"terminate tun -timeout 60s", "terminate tun --timeout 60s"},
		{"stats -json", "stats --json"},
		{"sa list -ojson", "sa list -ojson"},
		{"sa list -o json", "sa list -o json"},
		{"pki issue /ca -id gw -san 1.2.3.4 -key ed25519 -install /x", "pki issue /ca --id gw --san 1.2.3.4 --key ed25519 --install /x"},
		{"pki ca /ca/inter -parent /ca/root", "pki ca /ca/inter --parent /ca/root"},
		{"rekey tun --ike-sa", "rekey tun --ike-sa"},
		{"-s sa sa list", "-s sa sa list"},
		{"sa add src 1.2.3.4 dst 5.6.7.8", "sa add src 1.2.3.4 dst 5.6.7.8"},
		{"sa -help", "sa --help"},
		{"-version", "--version"},
		{"list-sas -- -json", "list-sas -- -json"},
		{"list-sas -bogus", "list-sas --bogus"},
	} {
		if got := strings.Join(compatArgs(root, strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
}

// completion writes each shell's script; bash's parses.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := spuctl("completion", shell)
		if code != 0 || errOut != "" || !strings.Contains(out, "spuctl") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes", shell, code, errOut, len(out))
			continue
		}
		if shell == "bash" {
			f := filepath.Join(t.TempDir(), "spuctl.bash")
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
				t.Errorf("bash -n: %v: %s", err, b)
			}
		}
	}
	// What the scripts ask: the commands, a command's flags, -o's values,
	// and connection names from iked.
	iked := fakeIked(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "li"}, "list-conns"},
		{[]string{"__complete", "sa", ""}, "list"},
		{[]string{"__complete", "load-initiate", "tun", "--c"}, "--count"},
		{[]string{"__complete", "sa", "list", "-o", ""}, "json"},
		{[]string{"-c", iked, "__complete", "initiate", ""}, "x"},
	} {
		code, out, _ := spuctl(c.args...)
		if code != 0 || !slices.Contains(strings.Split(out, "\n"), c.want) && !strings.Contains(out, c.want+"\t") {
			t.Errorf("spuctl %s: exit %d, %q, want %q", strings.Join(c.args, " "), code, out, c.want)
		}
	}
}

// spuctl --version is spuctl's build line.
func TestVersionFlag(t *testing.T) {
	for _, flag := range []string{"--version", "-v", "-version"} {
		code, out, errOut := spuctl(flag)
		if code != 0 || out != version.Line("spuctl")+"\n" || errOut != "" {
			t.Errorf("spuctl %s: exit %d, %q, stderr %q", flag, code, out, errOut)
		}
	}
}

// spuctl version shows both daemons' versions, or why not.
func TestVersionCommand(t *testing.T) {
	spud, iked := fakeSpud(t), fakeIked(t)
	code, out, errOut := spuctl("-s", spud, "-c", iked, "version")
	v := version.Get().String()
	if want := "spuctl " + v + "\nspud " + v + "\niked " + v + "\n"; code != 0 || out != want {
		t.Errorf("version: exit %d, %q, want %q; stderr %q", code, out, want, errOut)
	}
	nowhere := filepath.Join(t.TempDir(), "iked.sock")
	code, out, _ = spuctl("-s", spud, "-c", nowhere, "version")
	if !strings.Contains(out, "\nspud "+v+"\n") || !strings.Contains(out, "iked not reachable: iked (control socket) at "+nowhere+": connect: no such file") || code != 0 {
		t.Errorf("version without iked: exit %d, %q", code, out)
	}
	code, out, _ = spuctl("-s", spud, "-c", nowhere, "version", "-o", "json")
	var vs versions
	if err := json.Unmarshal([]byte(out), &vs); err != nil || code != 0 || vs.Spud.Version == nil || vs.Iked.Version != nil || vs.Iked.Error == "" || vs.Iked.Socket != nowhere {
		t.Errorf("version -o json without iked: exit %d, %v: %s", code, err, out)
	}
}

func TestLogLevelCommand(t *testing.T) {
	spud, iked := fakeSpud(t), fakeIked(t)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"log-level", "iked"}, 0, "iked logs at info\n"},
		{[]string{"log-level", "spud", "debug"}, 0, "spud logs at debug\n"},
		{[]string{"log-level", "spud"}, 0, "spud logs at debug\n"},
		{[]string{"log-level", "iked", "loud"}, 2, ""},
		{[]string{"log-level", "charon"}, 2, ""},
		{[]string{"log-level"}, 2, ""},
	} {
		code, out, errOut := spuctl(append([]string{"-s", spud, "-c", iked}, c.args...)...)
		if code != c.code || out != c.out {
			t.Errorf("%v: exit %d, %q (stderr %q), want %d, %q", c.args, code, out, errOut, c.code, c.out)
		}
	}
	nowhere := filepath.Join(t.TempDir(), "spud.sock")
	if code, _, errOut := spuctl("-s", nowhere, "log-level", "spud"); code != 1 || !strings.Contains(errOut, "spud (SA API) at "+nowhere) {
		t.Errorf("log-level without spud: exit %d, %q", code, errOut)
	}
}

// Each list and show writes, with -o json (and the older -json, and
// --output=json), JSON whose fields are those docs/operations.md
// documents for it: every field written documented, every documented one
// written (the fake daemons fill every field).
func TestJSONOutputAsDocumented(t *testing.T) {
	spud, iked := fakeSpud(t), fakeIked(t)
	schemas := docSchemas(t)
	for _, c := range []struct {
		cmd   string
		lines bool // one object a line
	}{
		{"sa list", true}, {"policy list", true}, {"spu list", false}, {"status", false}, {"stats", false},
		{"list-conns", true}, {"list-sas", true}, {"load-status", false}, {"ike-stats", false}, {"version", false},
	} {
		t.Run(strings.ReplaceAll(c.cmd, " ", "_"), func(t *testing.T) {
			d, ok := schemas[c.cmd]
			if !ok {
				t.Fatalf("docs/operations.md has no \"#### `spuctl %s -o json`\"", c.cmd)
			}
			args := strings.Fields(c.cmd)
			if c.cmd == "load-status" {
				args = append(args, "tun")
			}
			var first string
			for i, flags := range [][]string{{"-o", "json"}, {"-json"}, {"--output=json"}} {
				code, out, errOut := spuctl(append(append([]string{"-s", spud, "-c", iked}, args...), flags...)...)
				if code != 0 || errOut != "" {
					t.Errorf("spuctl %s %s: exit %d: %s", c.cmd, strings.Join(flags, " "), code, errOut)
					continue
				}
				if i == 0 {
					first = out
					d.check(t, c.cmd, out, c.lines)
				} else if out != first && c.cmd != "version" {
					t.Errorf("spuctl %s %s differs from -o json", c.cmd, strings.Join(flags, " "))
				}
			}
			// -o text is the default, and not JSON.
			code, out, _ := spuctl(append([]string{"-s", spud, "-c", iked}, append(args, "-o", "text")...)...)
			_, def, _ := spuctl(append([]string{"-s", spud, "-c", iked}, args...)...)
			if code != 0 || out != def || strings.HasPrefix(out, "{") {
				t.Errorf("spuctl %s -o text: exit %d, %q; default %q", c.cmd, code, out, def)
			}
		})
	}
}

// A list-sas CONN listing, -o json too, has only CONN's IKE SAs.
func TestListSAsConnJSON(t *testing.T) {
	iked := fakeIked(t)
	for _, c := range []struct {
		conn  string
		lines int
	}{{"tun", 1}, {"other", 0}} {
		code, out, errOut := spuctl("-c", iked, "list-sas", c.conn, "-o", "json")
		if code != 0 || strings.Count(out, "\n") != c.lines {
			t.Errorf("list-sas %s -o json: exit %d, %q, %s", c.conn, code, out, errOut)
		}
	}
}

// The usage-error marker is set before a command's own code: an error
// that code returns is a failure (1) unless it says it is a usage error.
func TestExitStatusOfRefusal(t *testing.T) {
	spud := fakeSpud(t)
	// The fake does not handle sa.del: spud's refusal of an op it does
	// not know is a failure, not a usage error.
	code, _, errOut := spuctl("-s", spud, "sa", "del", "spi", "0x5002")
	if code != 1 || !strings.HasPrefix(errOut, "spuctl sa del: spud: sa.del: ") {
		t.Errorf("refused sa del: exit %d, %q", code, errOut)
	}
}

// The doc comment's lines and the README's show commands spuctl has.
func TestDocCommandsExist(t *testing.T) {
	root := (&app{}).newRoot()
	b, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "//\tspuctl ")
		if !ok {
			continue
		}
		words := strings.Fields(rest)
		if c, _, err := root.Find(words[:min(2, len(words))]); err != nil || c == root {
			t.Errorf("doc comment: %q is not a command", line)
		}
		n++
	}
	if n < 20 {
		t.Errorf("%d commands in the doc comment", n)
	}
}
