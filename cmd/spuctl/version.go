package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/version"
)

// daemonVersion is one daemon's answer to version, or why there is none.
type daemonVersion struct {
	// Socket is where spuctl asked.
	Socket string `json:"socket"`
	// Version is the daemon's build; nil when it did not answer.
	Version *version.Info `json:"version,omitempty"`
	// Reachable says spuctl connected; Error says why there is no
	// Version: not reachable, or a daemon that refused (one older than
	// the version operation: "unknown operation").
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// versions is spuctl version's JSON object.
type versions struct {
	Spuctl version.Info  `json:"spuctl"`
	Spud   daemonVersion `json:"spud"`
	Iked   daemonVersion `json:"iked"`
}

// caller is the call both daemons' clients have.
type caller interface {
	Call(op string, req, reply any) error
	Close() error
}

func (a *app) versionCommand() *cobra.Command {
	var o outputFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the versions of spuctl, spud and iked",
		Long: `Show spuctl's build and, where they answer, spud's and iked's (each daemon
at its socket, --spud-socket and --iked-socket); a daemon that does not
answer is shown as "not reachable" with the reason, one that refuses (older
than the version operation) as "version not known". spuctl --version shows
spuctl's alone. The exit status is 0 either way.`,
		Example: `  spuctl version
  spuctl version -o json | jq -r .spud.version.version`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			asJSON, err := o.asJSON()
			if err != nil {
				return err
			}
			v := versions{Spuctl: version.Get(),
				Spud: a.daemonVersion(a.spudSocket, func() (caller, error) {
					c, err := a.dialSpud()
					if err != nil {
						return nil, err
					}
					c.Timeout = timeout
					return c, nil
				}),
				Iked: a.daemonVersion(a.ikedSocket, func() (caller, error) {
					c, err := a.dialIked()
					if err != nil {
						return nil, err
					}
					c.SetTimeout(timeout)
					return c, nil
				})}
			if asJSON {
				return printJSON(a.out, v)
			}
			fmt.Fprintf(a.out, "spuctl %s\n", v.Spuctl)
			for _, d := range []struct {
				name string
				v    daemonVersion
			}{{"spud", v.Spud}, {"iked", v.Iked}} {
				switch {
				case d.v.Version != nil:
					fmt.Fprintf(a.out, "%s %s\n", d.name, d.v.Version)
				case d.v.Reachable:
					fmt.Fprintf(a.out, "%s version not known: %s\n", d.name, d.v.Error)
				default:
					fmt.Fprintf(a.out, "%s not reachable: %s\n", d.name, d.v.Error)
				}
			}
			return nil
		},
	}
	o.add(cmd, "one object: spuctl, spud and iked")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for each daemon")
	return cmd
}

// daemonVersion asks one daemon for its version.
func (a *app) daemonVersion(socket string, dial func() (caller, error)) daemonVersion {
	d := daemonVersion{Socket: socket}
	c, err := dial()
	if err != nil {
		d.Error = err.Error()
		return d
	}
	defer c.Close()
	d.Reachable = true
	var v version.Info
	if err := c.Call(api.OpVersion, nil, &v); err != nil {
		d.Error = err.Error()
		return d
	}
	d.Version = &v
	return d
}
