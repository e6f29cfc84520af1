package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// renderHelp writes what text/template wrote for the default help
// templates (template.go), field by field and in the same order; each
// branch names the template text it stands for.
func renderHelp(w io.Writer, templ string, data interface{}, wrapAt int) error {
	r := helpRenderer{wrapAt: wrapAt}
	switch {
	case templ == AppHelpTemplate:
		a, ok := data.(*App)
		if !ok {
			return fmt.Errorf("AppHelpTemplate with %T", data)
		}
		r.app(a)
	case templ == CommandHelpTemplate || templ == SubcommandHelpTemplate:
		c, ok := data.(*Command)
		if !ok {
			return fmt.Errorf("command help template with %T", data)
		}
		r.command(c, templ == SubcommandHelpTemplate)
	default:
		return errors.New("custom help templates are not supported by this build")
	}
	_, err := io.WriteString(w, r.b.String())
	return err
}

type helpRenderer struct {
	b      strings.Builder
	wrapAt int
}

func (r *helpRenderer) s(ss ...string) {
	for _, s := range ss {
		r.b.WriteString(s)
	}
}

func (r *helpRenderer) wrap(input string, off int) string { return wrap(input, off, r.wrapAt) }

// helpNameTemplate.
func (r *helpRenderer) helpName(helpName, usage string) {
	v := offset(helpName, 6)
	r.s(r.wrap(helpName, 3))
	if usage != "" {
		r.s(" - ", r.wrap(usage, v))
	}
}

// AppHelpTemplate.
func (r *helpRenderer) app(a *App) {
	r.s("NAME:\n   ")
	r.helpName(a.HelpName, a.Usage)
	r.s("\n\nUSAGE:\n   ")
	if a.UsageText != "" {
		r.s(r.wrap(a.UsageText, 3))
	} else {
		r.s(a.HelpName, " ")
		if len(a.VisibleFlags()) > 0 {
			r.s("[global options]")
		}
		if len(a.Commands) > 0 {
			r.s(" command [command options]")
		}
		r.argsUsage(a.ArgsUsage, a.Args)
	}
	if a.Version != "" && !a.HideVersion {
		r.s("\n\nVERSION:\n   ", a.Version)
	}
	if a.Description != "" {
		r.s("\n\nDESCRIPTION:\n   ", r.wrap(a.Description, 3))
	}
	if len(a.Authors) > 0 {
		r.s("\n\nAUTHOR")
		if len(a.Authors) != 1 {
			r.s("S")
		}
		r.s(":\n   ")
		for i, author := range a.Authors {
			if i > 0 {
				r.s("\n   ")
			}
			r.s(fmt.Sprint(author))
		}
	}
	if len(a.VisibleCommands()) > 0 {
		r.s("\n\nCOMMANDS:")
		r.commandCategories(a.VisibleCategories())
	}
	if fc := a.VisibleFlagCategories(); len(fc) > 0 {
		r.s("\n\nGLOBAL OPTIONS:")
		r.flagCategories(fc)
	} else if fs := a.VisibleFlags(); len(fs) > 0 {
		r.s("\n\nGLOBAL OPTIONS:")
		r.flags(fs)
	}
	if a.Copyright != "" {
		r.s("\n\nCOPYRIGHT:\n   ", r.wrap(a.Copyright, 3))
	}
	r.s("\n")
}

// CommandHelpTemplate, and SubcommandHelpTemplate when sub.
func (r *helpRenderer) command(c *Command, sub bool) {
	r.s("NAME:\n   ")
	r.helpName(c.HelpName, c.Usage)
	r.s("\n\nUSAGE:\n   ")
	// usageTemplate
	if c.UsageText != "" {
		r.s(r.wrap(c.UsageText, 3))
	} else {
		r.s(c.HelpName)
		if len(c.VisibleFlags()) > 0 {
			r.s(" [command options]")
		}
		r.argsUsage(c.ArgsUsage, c.Args)
	}
	if c.Category != "" {
		r.s("\n\nCATEGORY:\n   ", c.Category)
	}
	if c.Description != "" {
		r.s("\n\nDESCRIPTION:\n   ", r.wrap(c.Description, 3))
	}
	if sub && len(c.VisibleCommands()) > 0 {
		r.s("\n\nCOMMANDS:")
		r.commandCategories(c.VisibleCategories())
	}
	if fc := c.VisibleFlagCategories(); len(fc) > 0 {
		r.s("\n\nOPTIONS:")
		r.flagCategories(fc)
	} else if fs := c.VisibleFlags(); len(fs) > 0 {
		r.s("\n\nOPTIONS:")
		r.flags(fs)
	}
	r.s("\n")
}

// The end of usageTemplate (and of the App's usage).
func (r *helpRenderer) argsUsage(argsUsage string, args bool) {
	if argsUsage != "" {
		r.s(" ", argsUsage)
	} else if args {
		r.s(" [arguments...]")
	}
}

// visibleCommandCategoryTemplate.
func (r *helpRenderer) commandCategories(cats []CommandCategory) {
	for _, cat := range cats {
		if cat.Name() == "" {
			r.commands(cat.VisibleCommands())
			continue
		}
		r.s("\n   ", cat.Name(), ":")
		for _, c := range cat.VisibleCommands() {
			r.s("\n     ", strings.Join(c.Names(), ", "), "\t", c.Usage)
		}
	}
}

// visibleCommandTemplate.
func (r *helpRenderer) commands(cmds []*Command) {
	cv := offsetCommands(cmds, 5)
	for _, c := range cmds {
		s := strings.Join(c.Names(), ", ")
		r.s("\n   ", s, indent(subtract(cv, offset(s, 3)), ""), r.wrap(c.Usage, cv))
	}
}

// visibleFlagCategoryTemplate.
func (r *helpRenderer) flagCategories(cats []VisibleFlagCategory) {
	for _, cat := range cats {
		r.s("\n   ")
		if cat.Name() != "" {
			r.s(cat.Name(), "\n\n   ")
		}
		fs := cat.Flags()
		for i, f := range fs {
			r.s(fmt.Sprint(f))
			if i == len(fs)-1 {
				r.s("\n")
			} else {
				r.s("\n   ")
			}
		}
	}
}

// visibleFlagTemplate.
func (r *helpRenderer) flags(fs []Flag) {
	for _, f := range fs {
		r.s("\n   ", r.wrap(f.String(), 6))
	}
}
