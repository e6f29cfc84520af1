package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/walship/walship/internal/cli"
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
// YAML file. A flag given on the command line or whose environment variable
// is set (even empty) keeps that value, which is walship's order: flag,
// WALSHIP_* variable, config file, default. Nothing is done before a file
// is read: a call without one pays only for a missing /etc/walship file.
type configFile struct {
	app    *cli.App
	all    func() []*cli.Command // every command in full: kinds needs their flags
	path   string
	values map[string]configValue // by key; nil when no file was read
}

// A configValue is a setting from the file, as flag.Value.Set takes it.
type configValue struct {
	list []string // one Set each; a scalar is a list of one
}

// readConfigFile hooks the Before of app and of every command, so that
// the config file that --config names can set their flags. It runs after
// the commands are in place and have their OnUsageError; all returns every
// command in full. Keys that name no flag are logged as warnings and
// ignored.
func readConfigFile(app *cli.App, g *globals, all func() []*cli.Command) {
	cf := &configFile{app: app, all: all}
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
	cf.hookCommands(app.Commands)
}

func (cf *configFile) hookCommands(cmds []*cli.Command) {
	for _, cmd := range cmds {
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
		cf.hookCommands(cmd.Subcommands)
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

// configKindOf says what kind of value the config file gives f, or 0 if
// the file must not set it: flags of cliOnly, and hidden flags, which are
// internal.
func configKindOf(f cli.Flag) configKind {
	names := flagNames(f)
	if len(names) == 0 || cliOnly[names[0]] {
		return 0
	}
	if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
		return 0
	}
	switch f.(type) {
	case *cli.StringFlag, *cli.PathFlag, *cli.GenericFlag: // --incremental[=auto]
		return kindString
	case *cli.DurationFlag:
		return kindDuration
	case *cli.BoolFlag:
		return kindBool
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
		return kindInt
	case *cli.Float64Flag:
		return kindFloat
	case *cli.StringSliceFlag:
		return kindList
	}
	return 0
}

// flagNames returns f's name and aliases. It reads the fields: the Names
// method of urfave/cli runs a regular expression over each name.
func flagNames(f cli.Flag) []string {
	var name string
	var aliases []string
	switch fl := f.(type) {
	case *cli.StringFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.PathFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.GenericFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.DurationFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.BoolFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.IntFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.Int64Flag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.UintFlag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.Uint64Flag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.Float64Flag:
		name, aliases = fl.Name, fl.Aliases
	case *cli.StringSliceFlag:
		name, aliases = fl.Name, fl.Aliases
	default:
		return f.Names()
	}
	return append([]string{name}, aliases...)
}

// kinds returns the kind of value of every flag the file may set, by name
// and alias, over the app and all its commands: a key that names a flag of
// another command is no typo.
func (cf *configFile) kinds() map[string]configKind {
	kinds := map[string]configKind{}
	seen := map[*cli.Command]bool{} // urfave/cli's help command is its own subcommand
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			k := configKindOf(f)
			if k == 0 {
				continue
			}
			for _, n := range flagNames(f) {
				if old, ok := kinds[n]; ok && old != k {
					// One key in the file must mean one thing to every command.
					panic(fmt.Sprintf("walship: flag --%s has different types in different commands", n))
				}
				kinds[n] = k
			}
		}
		for _, c := range cmds {
			if !seen[c] {
				seen[c] = true
				walk(c.Flags, c.Subcommands)
			}
		}
	}
	walk(cf.app.Flags, cf.all())
	return kinds
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
	cf.values = values
	return unknown, nil
}

// apply sets those of flags that the command line and the environment left
// alone from the config file.
func (cf *configFile) apply(c *cli.Context, flags []cli.Flag) error {
	if cf.values == nil {
		return nil
	}
	for _, f := range flags {
		if configKindOf(f) == 0 {
			continue
		}
		names := flagNames(f)
		v, ok := cf.values[names[0]]
		if !ok || c.IsSet(names[0]) {
			continue
		}
		for _, e := range v.list {
			if err := c.Set(names[0], e); err != nil {
				return usagef("config file %s: %s: %w", cf.path, names[0], err)
			}
		}
	}
	return nil
}

// parse turns the file into the values of the flags it names, checked
// against each flag's type. It works on YAML nodes rather than decoding
// into a map so that "target-xid: 1234" stays the string a string flag
// wants, and so that each error can name its line.
func (cf *configFile) parse(b []byte) (values map[string]configValue, unknown []string, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, err
	}
	kinds := cf.kinds()
	values = map[string]configValue{}
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
		kind, ok := kinds[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if val.Tag == "!!null" {
			continue // "archive:" with no value leaves the flag alone
		}
		v, err := parseConfigValue(kind, val)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %s: %w", val.Line, name, err)
		}
		values[name] = v
	}
	return values, unknown, nil
}

// parseConfigValue checks n against a flag of kind k and returns it as the
// flag takes it.
func parseConfigValue(k configKind, n *yaml.Node) (configValue, error) {
	if k == kindList {
		if n.Kind == yaml.ScalarNode {
			return configValue{[]string{n.Value}}, nil // a single value needs no list
		}
		if n.Kind != yaml.SequenceNode {
			return configValue{}, errors.New("want a list of values")
		}
		list := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return configValue{}, fmt.Errorf("line %d: want a single value in the list", e.Line)
			}
			list = append(list, e.Value)
		}
		return configValue{list}, nil
	}
	if n.Kind != yaml.ScalarNode {
		return configValue{}, errors.New("want a single value, not a list or a mapping")
	}
	v := n.Value // the YAML text as written, whatever type YAML sees in it
	switch k {
	case kindDuration:
		if _, err := time.ParseDuration(v); err != nil {
			return configValue{}, fmt.Errorf("want a duration like 500ms, 5s or 1m30s, got %q", v)
		}
	case kindBool:
		var b bool
		if err := n.Decode(&b); err != nil {
			return configValue{}, fmt.Errorf("want true or false, got %q", v)
		}
		v = strconv.FormatBool(b) // YAML's yes and on too
	case kindInt:
		if _, err := strconv.Atoi(v); err != nil {
			return configValue{}, fmt.Errorf("want a whole number, got %q", v)
		}
	case kindFloat:
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return configValue{}, fmt.Errorf("want a number, got %q", v)
		}
	}
	return configValue{[]string{v}}, nil
}
