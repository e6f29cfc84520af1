package cli

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"text/tabwriter"
	"text/template"
)

// templateHelp is upstream's printHelpCustom (v2.27.7): the default
// templates rendered by text/template, which renderHelp stands for.
func templateHelp(out io.Writer, templ string, data interface{}, wrapAt int) error {
	funcMap := template.FuncMap{
		"join":           strings.Join,
		"subtract":       subtract,
		"indent":         indent,
		"nindent":        nindent,
		"trim":           strings.TrimSpace,
		"wrap":           func(input string, offset int) string { return wrap(input, offset, wrapAt) },
		"offset":         offset,
		"offsetCommands": offsetCommands,
	}
	w := tabwriter.NewWriter(out, 1, 8, 2, ' ', 0)
	t := template.Must(template.New("help").Funcs(funcMap).Parse(templ))
	for name, value := range map[string]string{
		"helpNameTemplate":               helpNameTemplate,
		"usageTemplate":                  usageTemplate,
		"descriptionTemplate":            descriptionTemplate,
		"visibleCommandTemplate":         visibleCommandTemplate,
		"copyrightTemplate":              copyrightTemplate,
		"versionTemplate":                versionTemplate,
		"visibleFlagCategoryTemplate":    visibleFlagCategoryTemplate,
		"visibleFlagTemplate":            visibleFlagTemplate,
		"authorsTemplate":                authorsTemplate,
		"visibleCommandCategoryTemplate": visibleCommandCategoryTemplate,
	} {
		template.Must(t.New(name).Parse(value))
	}
	if err := t.Execute(w, data); err != nil {
		return err
	}
	return w.Flush()
}

func helpTestApp(categories, authors bool) *App {
	long := "a usage long enough to be wrapped when the help is wrapped at a narrow width, with several words"
	sub := []*Command{
		{Name: "inner", Aliases: []string{"i"}, Usage: "the inner one", Flags: []Flag{&BoolFlag{Name: "x", Usage: "x it"}}},
		{Name: "other", Usage: long, Hidden: false, Category: map[bool]string{true: "more"}[categories]},
		{Name: "secret", Usage: "hidden", Hidden: true},
	}
	a := &App{
		Name:        "tool",
		Usage:       "does things\nover two lines",
		Version:     "1.2.3",
		Description: "A description.\n\nWith a paragraph, and " + long + ".",
		Copyright:   "(c) someone",
		Flags: []Flag{
			&StringFlag{Name: "archive", Aliases: []string{"a"}, Value: "/x", Usage: "where `DIR` is", EnvVars: []string{"T_ARCHIVE"}},
			&DurationFlag{Name: "poll", Usage: long},
			&BoolFlag{Name: "hidden", Hidden: true},
		},
		Commands: []*Command{
			{Name: "push", Usage: "push a file", ArgsUsage: "%p %f", Description: "Pushes.\n  Indented.",
				Flags: []Flag{
					&StringFlag{Name: "compress", Value: "zstd", Usage: long},
					&IntFlag{Name: "jobs", Value: 2, Usage: "`N` at once"},
				}},
			{Name: "wait", Aliases: []string{"w"}, Usage: long, UsageText: "tool wait %f %p\n   tool wait --fast", Args: true,
				Category: map[bool]string{true: "standby"}[categories]},
			{Name: "group", Usage: "has subcommands", Subcommands: sub, Category: map[bool]string{true: "standby"}[categories]},
			{Name: "flagcats", Usage: "flags in categories", Flags: []Flag{
				&StringFlag{Name: "a1", Category: "first"},
				&StringFlag{Name: "b1", Usage: long, Category: "second"},
				&StringFlag{Name: "c1"},
			}},
			{Name: "gone", Hidden: true},
		},
	}
	if authors {
		a.Authors = []*Author{{Name: "A", Email: "a@x"}, {Name: "B"}}
	}
	return a
}

// renderHelp writes what the templates wrote, for the app, a command, a
// command with subcommands, flag categories, command categories, hidden
// commands and flags, wrapping on and off.
func TestHelpMatchesTemplates(t *testing.T) {
	for _, categories := range []bool{false, true} {
		for _, authors := range []bool{false, true} {
			for _, wrapAt := range []int{10000, 40} {
				a := helpTestApp(categories, authors)
				a.Writer = io.Discard
				a.HideVersion = authors // both ways
				a.Setup()
				set := flag.NewFlagSet("tool", flag.ContinueOnError)
				cCtx := NewContext(a, set, nil)
				check := func(what, templ string, data interface{}) {
					t.Helper()
					var want, got bytes.Buffer
					if err := templateHelp(&want, templ, data, wrapAt); err != nil {
						t.Fatalf("%s: template: %v", what, err)
					}
					w := tabwriter.NewWriter(&got, 1, 8, 2, ' ', 0)
					if err := renderHelp(w, templ, data, wrapAt); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					w.Flush()
					if got.String() != want.String() {
						t.Errorf("%s (categories %v, authors %v, wrap %d):\n--- got\n%s\n--- want (text/template)\n%s",
							what, categories, authors, wrapAt, got.String(), want.String())
					}
					if want.Len() < 40 {
						t.Errorf("%s: only %q rendered", what, want.String())
					}
				}
				check("app", AppHelpTemplate, a)
				for _, c := range a.Commands {
					c.setup(cCtx)
					check("command "+c.Name, CommandHelpTemplate, c)
					check("subcommand help of "+c.Name, SubcommandHelpTemplate, c)
				}
			}
		}
	}
}

// printHelpCustom honours wrapAt, the one custom function walship's copy
// keeps.
func TestHelpWrapAt(t *testing.T) {
	a := helpTestApp(false, false)
	a.Setup()
	var b bytes.Buffer
	printHelpCustom(&b, AppHelpTemplate, a, map[string]interface{}{"wrapAt": func() int { return 40 }})
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, "several") && len(line) > 60 {
			t.Errorf("line not wrapped at 40: %q", line)
		}
	}
	if !strings.Contains(b.String(), "GLOBAL OPTIONS:") {
		t.Errorf("no options in %q", b.String())
	}
}

// The help of a command asked for before it is set up ("app help cmd")
// lists its subcommands, as "app cmd --help" does.
func TestVisibleCategoriesBeforeSetup(t *testing.T) {
	a := helpTestApp(true, false)
	var group *Command
	for _, c := range a.Commands {
		if c.Name == "group" {
			group = c
		}
	}
	var names []string
	for _, cat := range group.VisibleCategories() {
		for _, c := range cat.VisibleCommands() {
			names = append(names, c.Name)
		}
	}
	if got := strings.Join(names, " "); got != "inner other" {
		t.Errorf("subcommands %q, want the visible ones, by category: \"inner other\"", got)
	}
}
