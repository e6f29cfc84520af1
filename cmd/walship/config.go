package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"
)

// defaultConfigFile is read when neither --config nor WALSHIP_CONFIG names a
// file, and only if it exists.
const defaultConfigFile = "/etc/walship/walship.yaml"

// configFlag is the global --config flag. Its Value is the default file,
// which a missing file does not make an error; tests point it elsewhere.
func configFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "config", Value: defaultConfigFile, EnvVars: []string{"WALSHIP_CONFIG"}, TakesFile: true,
		Usage: "YAML `FILE` of settings named like the flags (archive: /srv/walship/main), below flags and WALSHIP_* " +
			"variables; the default is read only if it exists, '' reads none"}
}

// A configKind says how a YAML value becomes a flag's value.
type configKind int

const (
	kindString configKind = iota + 1
	kindDuration
	kindBool
	kindInt
	kindFloat
	kindList
)

// configFile makes the flags of an app and its commands settable from one
// YAML file, read through altsrc. altsrc skips a flag that was given on the
// command line or whose environment variable is set (even empty), which is
// walship's order: flag, WALSHIP_* variable, config file, default.
type configFile struct {
	kinds map[string]configKind // by flag name and alias
	path  string
	src   altsrc.InputSourceContext // nil when no file was read
}

// readConfigFile adds --config to app and wraps every flag of app and its
// commands so that the config file can set it. It runs after the commands
// are in place and have their OnUsageError. Keys that name no flag are
// logged as warnings and ignored.
func readConfigFile(app *cli.App, g *globals) {
	cf := &configFile{kinds: map[string]configKind{}}
	app.Flags = append(cf.wrap(app.Flags), configFlag())
	prev := app.Before
	app.Before = func(c *cli.Context) error {
		unknown, err := cf.load(c)
		if err == nil {
			err = cf.apply(c, app.Flags)
		}
		if err == nil && prev != nil {
			err = prev(c) // sets up the logger, from settings the file may hold
		}
		if err != nil {
			// Report it as the command about to run reports usage errors:
			// for a restore command, exit 2 would mean "not found".
			return asUsageError(c, c.App.Command(c.Args().First()), err)
		}
		for _, k := range unknown {
			g.logger.Warn("config file key names no flag; ignored", "path", cf.path, "key", k)
		}
		return nil
	}
	cf.wrapCommands(app.Commands)
}

func (cf *configFile) wrapCommands(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.Flags = cf.wrap(cmd.Flags)
		prev := cmd.Before
		cmd.Before = func(c *cli.Context) error {
			if err := cf.apply(c, cmd.Flags); err != nil {
				return asUsageError(c, cmd, err)
			}
			if prev != nil {
				return prev(c)
			}
			return nil
		}
		cf.wrapCommands(cmd.Subcommands)
	}
}

// asUsageError turns err into what cmd returns for a usage error.
func asUsageError(c *cli.Context, cmd *cli.Command, err error) error {
	if cmd != nil && cmd.OnUsageError != nil {
		return cmd.OnUsageError(c, err, true)
	}
	return usageError{err}
}

// cliOnly lists flags that a config file must not set: a "force: true"
// meant for one restore would empty the next data directory without asking.
var cliOnly = map[string]bool{"force": true, "dry-run": true, "json": true, "config": true}

// wrap returns flags with each one replaced by its altsrc equivalent, and
// records what kind of value each takes. Hidden flags are internal and stay
// out of the file.
func (cf *configFile) wrap(flags []cli.Flag) []cli.Flag {
	out := make([]cli.Flag, 0, len(flags))
	for _, f := range flags {
		var k configKind
		if vf, ok := f.(cli.VisibleFlag); cliOnly[f.Names()[0]] || (ok && !vf.IsVisible()) {
			out = append(out, f)
			continue
		}
		switch fl := f.(type) {
		case *cli.StringFlag:
			f, k = altsrc.NewStringFlag(fl), kindString
		case *cli.PathFlag:
			f, k = altsrc.NewPathFlag(fl), kindString
		case *cli.DurationFlag:
			f, k = altsrc.NewDurationFlag(fl), kindDuration
		case *cli.BoolFlag:
			f, k = altsrc.NewBoolFlag(fl), kindBool
		case *cli.IntFlag:
			f, k = altsrc.NewIntFlag(fl), kindInt
		case *cli.Int64Flag:
			f, k = altsrc.NewInt64Flag(fl), kindInt
		case *cli.UintFlag:
			f, k = altsrc.NewUintFlag(fl), kindInt
		case *cli.Uint64Flag:
			f, k = altsrc.NewUint64Flag(fl), kindInt
		case *cli.Float64Flag:
			f, k = altsrc.NewFloat64Flag(fl), kindFloat
		case *cli.StringSliceFlag:
			f, k = altsrc.NewStringSliceFlag(fl), kindList
		case *cli.GenericFlag: // --incremental[=auto]
			f, k = altsrc.NewGenericFlag(fl), kindString
		}
		if k != 0 {
			for _, n := range f.Names() {
				if old, ok := cf.kinds[n]; ok && old != k {
					// One key in the file must mean one thing to every command.
					panic(fmt.Sprintf("walship: flag --%s has different types in different commands", n))
				}
				cf.kinds[n] = k
			}
		}
		out = append(out, f)
	}
	return out
}

// load reads the config file that --config names, or the default one if it
// exists, and returns the keys that name no flag.
func (cf *configFile) load(c *cli.Context) (unknown []string, err error) {
	path := c.String("config")
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		return nil, nil
	}
	if err != nil {
		return nil, usagef("read the config file: %w", err)
	}
	values, unknown, err := cf.parse(b)
	if err != nil {
		return nil, usagef("config file %s: %w", path, err)
	}
	cf.path = path
	cf.src = altsrc.NewMapInputSource(path, values)
	return unknown, nil
}

// apply sets those of flags that the command line and the environment left
// alone from the config file.
func (cf *configFile) apply(c *cli.Context, flags []cli.Flag) error {
	if cf.src == nil {
		return nil
	}
	if err := altsrc.ApplyInputSourceValues(c, cf.src, flags); err != nil {
		return usagef("config file %s: %w", cf.path, err)
	}
	return nil
}

// parse turns the file into the values altsrc expects for each flag's
// type. It works on YAML nodes rather than decoding into a map so that
// "target-xid: 1234" stays the string a string flag wants, and so that each
// error can name its line.
func (cf *configFile) parse(b []byte) (values map[any]any, unknown []string, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, err
	}
	values = map[any]any{}
	seen := map[string]bool{}
	if len(doc.Content) == 0 {
		return values, nil, nil // empty, or only comments
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("line %d: want flag names and values, like \"archive: /srv/walship/main\"", root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		name := key.Value
		if seen[name] {
			return nil, nil, fmt.Errorf("line %d: %s is set twice", key.Line, name)
		}
		seen[name] = true
		kind, ok := cf.kinds[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if val.Tag == "!!null" {
			continue // "archive:" with no value leaves the flag alone
		}
		v, err := configValue(kind, val)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %s: %w", val.Line, name, err)
		}
		values[name] = v
	}
	return values, unknown, nil
}

// configValue converts n into the Go type altsrc's MapInputSource wants for
// a flag of kind k.
func configValue(k configKind, n *yaml.Node) (any, error) {
	if k == kindList {
		if n.Kind == yaml.ScalarNode {
			return []any{n.Value}, nil // a single value needs no list
		}
		if n.Kind != yaml.SequenceNode {
			return nil, errors.New("want a list of values")
		}
		list := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: want a single value in the list", e.Line)
			}
			list = append(list, e.Value)
		}
		return list, nil
	}
	if n.Kind != yaml.ScalarNode {
		return nil, errors.New("want a single value, not a list or a mapping")
	}
	switch k {
	case kindDuration:
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return nil, fmt.Errorf("want a duration like 500ms, 5s or 1m30s, got %q", n.Value)
		}
		return d, nil
	case kindBool:
		var v bool
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("want true or false, got %q", n.Value)
		}
		return v, nil
	case kindInt:
		v, err := strconv.Atoi(n.Value)
		if err != nil {
			return nil, fmt.Errorf("want a whole number, got %q", n.Value)
		}
		return v, nil
	case kindFloat:
		v, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return nil, fmt.Errorf("want a number, got %q", n.Value)
		}
		return v, nil
	}
	return n.Value, nil // the YAML text as written, whatever type YAML sees in it
}
