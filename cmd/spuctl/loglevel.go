package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// leveler is what both daemons' clients answer log-level with.
type leveler interface {
	LogLevel(level string) (string, error)
	Close() error
}

func (a *app) logLevelCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "log-level spud|iked [debug|info|warn|error]",
		Short: "Show or set the level a daemon logs at, while it runs",
		Long: `Show the level spud or iked logs at, or set it until the daemon stops
(its -log-level flag is the level it starts with). Debug logging at a
high setup rate costs CPU and disk: set it back when done.`,
		Example: `  spuctl log-level iked
  spuctl log-level spud debug`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"spud", "iked"},
		RunE: func(_ *cobra.Command, args []string) error {
			level := ""
			if len(args) == 2 {
				switch args[1] {
				case "debug", "info", "warn", "error":
					level = args[1]
				default:
					return usagef("log-level: level %q: want debug, info, warn or error", args[1])
				}
			}
			var dial func() (leveler, error)
			switch args[0] {
			case "spud":
				dial = func() (leveler, error) {
					c, err := a.dialSpud()
					if err != nil {
						return nil, err
					}
					c.Timeout = timeout
					return c, nil
				}
			case "iked":
				dial = func() (leveler, error) {
					c, err := a.dialIked()
					if err != nil {
						return nil, err
					}
					c.SetTimeout(timeout)
					return c, nil
				}
			default:
				return usagef("log-level: daemon %q: want spud or iked", args[0])
			}
			c, err := dial()
			if err != nil {
				return err
			}
			defer c.Close()
			now, err := c.LogLevel(level)
			if err != nil {
				return fmt.Errorf("%s: log-level: %w", args[0], err)
			}
			fmt.Fprintf(a.out, "%s logs at %s\n", args[0], now)
			return nil
		},
	}
	addTimeout(cmd, &timeout, "how long to wait for the daemon")
	return cmd
}
