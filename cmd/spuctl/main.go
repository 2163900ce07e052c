// Command spuctl is the operator's tool for spud (the data plane) and iked
// (the IKE daemon). Every command has its help (`spuctl sa --help`,
// `spuctl help list-sas`), which needs no daemon running.
//
// Talking to spud's SA API (-s, --spud-socket; default /run/spugate/spud.sock):
//
//	spuctl sa add src A dst B proto esp spi N reqid R mode tunnel aead 'rfc4106(gcm(aes))' 0xKEY 128 ...
//	spuctl sa del spi N [dir in|out] [dst B]
//	spuctl sa list [-o json]      (page by page, in install order; json: one object a line)
//	spuctl policy add src P dst P dir out tmpl src A dst B proto esp reqid R mode tunnel
//	spuctl policy del ID
//	spuctl policy list [-o json]
//	spuctl spu list [-o json] | drain N | add N | fail N (fault injection)
//	spuctl status [-o json]       (the kernel, the steering carrier, each interface's modes)
//	spuctl stats [-o json]
//
// talking to iked's control socket (-c, --iked-socket; default /run/spugate/iked.sock):
//
//	spuctl list-conns [-o json]
//	spuctl list-sas [CONN] [-o json]    (page by page, in IKE SA unique id order; json: one object a line)
//	spuctl initiate CONN [CHILD]        (or --ike CONN --child CHILD) [--timeout 30s]
//	spuctl terminate CONN [CHILD]       (or --ike CONN, --ike-id N, --child-id N)
//	spuctl rekey CONN [CHILD]           (or --ike-id N, --child-id N; --ike-sa rekeys the IKE SA)
//	spuctl load-initiate CONN --count N [--window 16] [--load-timeout D] [--max-failures N] [--background]
//	spuctl load-status CONN [-o json]
//	spuctl reload
//	spuctl ike-stats [-o json]
//
// and to iked's VICI socket (--vici-socket; default /run/spugate/vici.sock):
//
//	spuctl monitor [-o json] [--count N] [--duration D] [--log info|warn]   (one event a line)
//
// and on its own: a lab PKI for certificate authentication (pki.go), the
// versions of spuctl and of both daemons, and shell completion:
//
//	spuctl pki ca DIR [--key ecdsa-p256|rsa3072|ed25519...] [--parent CADIR]
//	spuctl pki issue CADIR --id gw-a.example [--san ...] [--key ...] [--install CONFDIR]
//	spuctl version [-o json]            (spuctl --version: spuctl's alone)
//	spuctl completion bash|zsh|fish|powershell
//
// `sa add` and `policy add` take what `ip xfrm state add` and `ip xfrm
// policy add` take (see xfrmargs). The JSON output's fields are listed in
// docs/operations.md ("## spuctl").
//
// Exit status: 0 done (and for --help), 1 the command failed (a daemon
// not reachable or refusing), 2 a usage error (unknown command or flag,
// missing or extra arguments), said in one line.
//
// Flags are GNU style (--count 30, -o json), and for compatibility with
// the Go flag style spuctl took before, a single-dash long flag naming one
// of the command's flags (-count 30, -json, -timeout=60s) is read as its
// double-dash form (compatArgs).
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// app is one run of spuctl: where it writes and the global flags.
type app struct {
	out, errOut io.Writer
	spudSocket  string
	ikedSocket  string
	// started is set once a command's own code runs: an error before it
	// is cobra's (an unknown command or flag, arguments the command does
	// not take), a usage error.
	started bool
}

// usageError is a command line spuctl cannot run: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef makes a usage error.
func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// run runs spuctl with args, its exit status returned: 0, 1 for a failed
// command, 2 for a usage error.
func run(args []string, out, errOut io.Writer) int {
	a := &app{out: out, errOut: errOut}
	root := a.newRoot()
	root.SetArgs(compatArgs(root, args))
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	var ue *usageError
	usage := !a.started || errors.As(err, &ue)
	if cmd == nil {
		cmd = root
	}
	msg := oneLine(err.Error())
	if usage {
		fmt.Fprintf(errOut, "%s: %s (see '%s --help')\n", cmd.CommandPath(), msg, cmd.CommandPath())
		return 2
	}
	fmt.Fprintf(errOut, "%s: %s\n", cmd.CommandPath(), msg)
	return 1
}

// oneLine folds a multi-line error (cobra's "Did you mean this?"
// suggestions) into one line: the first, the others in parentheses.
func oneLine(s string) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) <= 1 {
		return strings.Join(lines, "")
	}
	return lines[0] + " (" + strings.Join(lines[1:], " ") + ")"
}

// newRoot builds the command tree.
func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "spuctl",
		Short: "Control spud (the data plane) and iked (the IKE daemon)",
		Long: `spuctl is the operator's tool for spugate: it lists and changes spud's SAs,
policies and SPUs over its SA API, and drives iked (connections, IKE SAs,
initiate, terminate, rekey, reload, load runs) over its control socket.
It also makes a lab PKI (spuctl pki) and shell completion scripts.

Exit status: 0 done, 1 the command failed (a daemon not reachable or
refusing), 2 a usage error (unknown command or flag, wrong arguments).

For compatibility with earlier spuctl, a single-dash long flag (-count 30,
-json, -timeout 60s) is read as its double-dash form (--count 30).`,
		Example: `  spuctl status
  spuctl sa list -o json
  spuctl -c /run/spugate/iked.sock initiate site-b
  spuctl list-sas site-b
  spuctl completion bash > /etc/bash_completion.d/spuctl`,
		Version:       version.Get().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// No Args: cobra's own check of the root's words suggests the
		// commands near a mistyped one.
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("want a command (spud: sa, policy, spu, status, stats; iked: list-conns, list-sas, initiate, terminate, rekey, load-initiate, load-status, reload, ike-stats, monitor; version, log-level; pki, completion)")
		},
	}
	root.SetVersionTemplate(version.Line("spuctl") + "\n")
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&a.spudSocket, "spud-socket", "s", api.DefaultSocket, "spud's SA API socket")
	pf.StringVarP(&a.ikedSocket, "iked-socket", "c", ikectl.DefaultSocket, "iked's control socket")
	root.AddGroup(&cobra.Group{ID: "spud", Title: "spud (data plane, SA API at --spud-socket):"},
		&cobra.Group{ID: "iked", Title: "iked (IKE daemon, control socket at --iked-socket):"},
		&cobra.Group{ID: "both", Title: "spud and iked:"},
		&cobra.Group{ID: "other", Title: "Without a daemon:"})
	for _, c := range a.spudCommands() {
		c.GroupID = "spud"
		root.AddCommand(c)
	}
	for _, c := range a.ikedCommands() {
		c.GroupID = "iked"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.versionCommand(), a.logLevelCommand()} {
		c.GroupID = "both"
		root.AddCommand(c)
	}
	pki := a.pkiCommand()
	pki.GroupID = "other"
	root.AddCommand(pki)
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	// Made now rather than when run, so that wrap and compatArgs see
	// them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	if help, _, err := root.Find([]string{"help"}); err == nil && help != root {
		// cobra's prints the root's help for a topic it does not know,
		// and exits 0.
		help.Run = nil
		help.RunE = func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usagef("unknown help topic %q", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		}
	}
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.Example = `  spuctl completion bash > /etc/bash_completion.d/spuctl
  spuctl completion zsh > "${fpath[1]}/_spuctl"
  spuctl completion fish > ~/.config/fish/completions/spuctl.fish`
	}
	a.wrap(root)
	return root
}

// wrap marks the start of each command's own code (app.started), and
// makes the commands with subcommands refuse an unknown one: cobra would
// print their help and exit 0.
func (a *app) wrap(c *cobra.Command) {
	for _, sub := range c.Commands() {
		a.wrap(sub)
	}
	if c.HasSubCommands() && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			var names []string
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			return usagef("want a subcommand: %s", strings.Join(names, ", "))
		}
	}
	if f := c.RunE; f != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			a.started = true
			return f(cmd, args)
		}
	}
}

// compatArgs rewrites the Go flag style spuctl took before cobra into
// pflag's: a single-dash token naming a long flag of the command being
// run (-count, -json, -timeout=60s) becomes --count...; pflag would read
// it as a row of shorthands. The command is followed down the tree by its
// words; a flag's value is stepped over; "--" ends the flags.
func compatArgs(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args))
	cmd := root
	positional := false
	for i := 0; i < len(args); i++ {
		s := args[i]
		if s == "--" {
			return append(out, args[i:]...)
		}
		if len(s) > 1 && s[0] == '-' && s[1] != '-' {
			name, _, hasValue := strings.Cut(s[1:], "=")
			var f *pflag.Flag
			switch {
			case len(name) == 1:
				f = lookupFlag(cmd, name, true)
			case name == "help" || name == "version" && cmd == root:
				s = "-" + s
			case strings.HasPrefix(name, "o") && lookupFlag(cmd, "o", true) != nil && (name[1:] == "json" || name[1:] == "text"):
				// -ojson: pflag's shorthand with its value.
			default:
				// A long flag the command takes, or one it does not,
				// which pflag then names in its error ("unknown flag:
				// --count") rather than reading "-count" as "-c ount".
				f = lookupFlag(cmd, name, false)
				s = "-" + s
			}
			out = append(out, s)
			if f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		if !positional && !strings.HasPrefix(s, "-") {
			if sub := subcommand(cmd, s); sub != nil {
				cmd = sub
			} else {
				positional = true
			}
		}
		out = append(out, s)
	}
	return out
}

// lookupFlag finds a flag cmd takes, its own or inherited, by name or by
// shorthand.
func lookupFlag(cmd *cobra.Command, name string, short bool) *pflag.Flag {
	sets := []*pflag.FlagSet{cmd.Flags()}
	for c := cmd; c != nil; c = c.Parent() {
		sets = append(sets, c.PersistentFlags())
	}
	for _, fs := range sets {
		var f *pflag.Flag
		if short {
			f = fs.ShorthandLookup(name)
		} else {
			f = fs.Lookup(name)
		}
		if f != nil {
			return f
		}
	}
	return nil
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

// dialSpud connects to spud's SA API.
func (a *app) dialSpud() (*api.Client, error) {
	c, err := api.Dial(a.spudSocket)
	if err != nil {
		return nil, dialError("spud (SA API)", a.spudSocket, "--spud-socket/-s", err)
	}
	return c, nil
}

// dialIked connects to iked's control socket.
func (a *app) dialIked() (*ikectl.Client, error) {
	c, err := ikectl.Dial(a.ikedSocket)
	if err != nil {
		return nil, dialError("iked (control socket)", a.ikedSocket, "--iked-socket/-c", err)
	}
	return c, nil
}

// dialError says which daemon and socket could not be reached, and the
// system's reason: "spud (SA API) at /run/spugate/spud.sock: connect: no
// such file or directory".
func dialError(who, path, flag string, err error) error {
	reason := err
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		reason = op.Err
	}
	daemon, _, _ := strings.Cut(who, " ")
	return fmt.Errorf("%s at %s: %v (is %s running? %s names another socket)", who, path, reason, daemon, flag)
}

// outputFlags are a listing's -o/--output and its older -json.
type outputFlags struct {
	format string
	json   bool
}

// add adds the flags to cmd; what says what the JSON is.
func (o *outputFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output format: text or json ("+what+"; fields in docs/operations.md)")
	cmd.Flags().BoolVar(&o.json, "json", false, "same as -o json")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

// asJSON reports whether the output is JSON; an unknown format is a
// usage error.
func (o *outputFlags) asJSON() (bool, error) {
	switch {
	case o.json || o.format == "json":
		return true, nil
	case o.format == "text":
		return false, nil
	}
	return false, usagef("--output %q: want text or json", o.format)
}
