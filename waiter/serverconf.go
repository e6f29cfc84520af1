package waiter

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/walship/walship/internal/pgver"
)

// prefetchMarker, in the data directory's pg_wal, remembers the postmaster
// start whose recovery_prefetch was checked: its pid and start time (lines 1
// and 3 of postmaster.pid), then the outcome, one per line.
const prefetchMarker = ".walship-prefetch-checked"

// Bounds on what the check reads. The depth is the server's own
// (CONF_FILE_MAX_DEPTH in guc-file.l); the others keep junk, such as an
// include_dir that includes itself from every file, from costing more than
// a server start would tolerate.
const (
	maxConfDepth      = 10
	maxConfFiles      = 1000
	maxConfFileBytes  = 4 << 20
	maxConfTotalBytes = 16 << 20
)

// CheckRecoveryPrefetch warns, once per start of the server whose data
// directory is pgdata ("" means the current directory, where PostgreSQL runs
// restore_command), when that server reads WAL ahead of replay: PostgreSQL 15
// and later do so unless recovery_prefetch is off (or
// maintenance_io_concurrency is 0), and then ask for the next segment
// before they have applied the end of the current one. A waiting
// restore_command holds those records back until the next segment is
// archived, so the standby lags a segment, and after a base backup it only
// becomes consistent once the next segment arrives.
//
// The setting is worked out as the server does: its command line
// (postmaster.opts), its configuration file with the files that file
// includes, then postgresql.auto.conf. The check is advisory and never fails:
// anything it cannot read is logged at debug level, without a warning. A
// marker file in pg_wal (prefetchMarker) records the postmaster start that
// was checked, so the later calls of that start cost three small file reads.
func CheckRecoveryPrefetch(pgdata string, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	defer func() {
		// A bug here must not stop recovery: restore_command's panics do.
		if r := recover(); r != nil {
			logger.Debug("recovery_prefetch check failed", "err", r)
		}
	}()
	if pgdata == "" {
		pgdata = "."
	}
	major, err := serverMajor(pgdata)
	if err != nil {
		logger.Debug("recovery_prefetch check skipped: no server version", "err", err)
		return
	}
	if !major.RecoveryPrefetch() {
		return // no recovery_prefetch, no read-ahead
	}
	start, err := postmasterStart(pgdata)
	if err != nil {
		logger.Debug("recovery_prefetch check skipped: no running postmaster", "err", err)
		return
	}
	marker := filepath.Join(pgdata, "pg_wal", prefetchMarker)
	if b, err := os.ReadFile(marker); err == nil && strings.HasPrefix(string(b), start) {
		return
	}

	outcome := "off"
	on, src, err := recoveryPrefetch(pgdata)
	switch {
	case err != nil:
		outcome = "unknown"
		logger.Debug("cannot tell whether recovery_prefetch is off; not warning", "err", err)
	case on:
		outcome = "warned"
		fix := "set recovery_prefetch = off in postgresql.conf (or ALTER SYSTEM SET recovery_prefetch = off) " +
			"and reload (pg_ctl reload) or restart the server"
		if src.Source == sourceCommandLine {
			fix = "the server's command line sets it, which outranks every file: start the server with " +
				"-c recovery_prefetch=off instead of " + src.Value
		}
		logger.Warn(prefetchLag+"; "+fix,
			"setting", src.Name, "value", src.Value, "source", src.Source, "pg_version", int(major))
	default:
		logger.Debug("no WAL read-ahead in recovery", "setting", src.Name, "value", src.Value, "source", src.Source)
	}
	if err := writeMarker(marker, []byte(start+outcome+"\n")); err != nil {
		logger.Debug("cannot remember the recovery_prefetch check; it runs again at the next call", "path", marker, "err", err)
	}
}

// prefetchLag is what CheckRecoveryPrefetch warns of, before the fix.
const prefetchLag = "recovery_prefetch is on: the server reads WAL ahead of replay and asks for the next segment " +
	"before it has applied the end of the current one, and walship wait holds that request until the next segment " +
	"is archived, so replay lags up to a segment behind (and a new standby is not consistent until then)"

// serverMajor returns the major version in pgdata's PG_VERSION ("15", "9.6").
func serverMajor(pgdata string) (pgver.Major, error) {
	b, err := readRegularFile(filepath.Join(pgdata, "PG_VERSION"), 64)
	if err != nil {
		return 0, err
	}
	v, err := pgver.Parse(string(b))
	if err != nil {
		return 0, fmt.Errorf("PG_VERSION holds %q", b)
	}
	return v, nil
}

// postmasterStart returns what identifies the running postmaster's start, as
// the marker file's first two lines: the pid and the start time (epoch
// seconds) from postmaster.pid.
func postmasterStart(pgdata string) (string, error) {
	b, err := readRegularFile(filepath.Join(pgdata, "postmaster.pid"), 4096)
	if err != nil {
		return "", err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 3 {
		return "", errors.New("postmaster.pid is incomplete")
	}
	pid, start := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[2])
	if _, err := strconv.ParseUint(pid, 10, 32); err != nil {
		return "", fmt.Errorf("postmaster.pid: pid %q", pid)
	}
	if _, err := strconv.ParseInt(start, 10, 64); err != nil {
		return "", fmt.Errorf("postmaster.pid: start time %q", start)
	}
	return pid + "\n" + start + "\n", nil
}

// writeMarker replaces path with b, so that a reader sees the old file or
// the new one, never a part.
func writeMarker(path string, b []byte) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Where a setting's effective value came from, besides "file:line".
const (
	sourceDefault     = "default"
	sourceCommandLine = "command line"
)

// serverSetting is the effective value of one server setting.
type serverSetting struct {
	Name, Value string
	Source      string // sourceDefault, sourceCommandLine, or file:line
}

// recoveryPrefetch reports whether the server of pgdata reads WAL ahead of
// replay, and the setting that decides it. PostgreSQL's xlogprefetcher.c
// reads ahead when recovery_prefetch is not off and
// maintenance_io_concurrency is above 0 (RecoveryPrefetchEnabled).
func recoveryPrefetch(pgdata string) (bool, serverSetting, error) {
	conf, err := readServerConf(pgdata)
	if err != nil {
		return false, serverSetting{}, err
	}
	rp := conf.effective("recovery_prefetch", "try")
	on, ok := prefetchEnum(rp.Value)
	if !ok {
		return false, rp, fmt.Errorf("recovery_prefetch = %q (%s) is not a value the server accepts", rp.Value, rp.Source)
	}
	if !on {
		return false, rp, nil
	}
	mic := conf.effective("maintenance_io_concurrency", "10")
	n, ok := gucInt(mic.Value)
	if !ok {
		return false, mic, fmt.Errorf("maintenance_io_concurrency = %q (%s) is not a value the server accepts", mic.Value, mic.Source)
	}
	if n == 0 {
		return false, mic, nil
	}
	return true, rp, nil
}

// prefetchEnum reads a recovery_prefetch value as guc_tables.c's
// recovery_prefetch_options do: on and try read ahead, off does not, and
// true/false, yes/no, 1/0 are on and off; case does not matter.
func prefetchEnum(v string) (on, ok bool) {
	switch gucLower(v) {
	case "on", "try", "true", "yes", "1":
		return true, true
	case "off", "false", "no", "0":
		return false, true
	}
	return false, false
}

// gucInt parses an integer setting without a unit as guc.c's parse_int
// does: decimal, 0x hex or leading-zero octal, or a decimal number with a
// fraction or an exponent, rounded to the nearest integer. It refuses the
// rarer forms strtod would take (hex floats, inf), which no one writes.
func gucInt(v string) (int64, bool) {
	body := strings.Trim(v, " \t\n\v\f\r")
	neg := strings.HasPrefix(body, "-")
	body = strings.TrimPrefix(strings.TrimPrefix(body, "-"), "+")
	if body == "" || body[0] != '.' && (body[0] < '0' || body[0] > '9') {
		return 0, false
	}
	var n int64
	var err error
	switch {
	case strings.HasPrefix(body, "0x") || strings.HasPrefix(body, "0X"):
		if len(body) == 2 || !isConfHexDigit(body[2]) {
			return 0, false
		}
		n, err = strconv.ParseInt(body[2:], 16, 64)
	case strings.ContainsAny(body, ".eE"):
		if !decimalFloat(body) {
			return 0, false
		}
		f, ferr := strconv.ParseFloat(body, 64)
		if ferr != nil || f > math.MaxInt32 {
			return 0, false
		}
		n = int64(math.RoundToEven(f))
	case body[0] == '0':
		n, err = strconv.ParseInt(body, 8, 64)
	default:
		n, err = strconv.ParseInt(body, 10, 64)
	}
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// decimalFloat reports whether s is digits, an optional fraction and an
// optional exponent, with at least one digit before the exponent.
func decimalFloat(s string) bool {
	i, digits := 0, 0
	for ; i < len(s) && isConfDigit(s[i]); i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && isConfDigit(s[i]); i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for ; i < len(s) && isConfDigit(s[i]); i++ {
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// serverConf is what a server's settings come from: its command line and
// the lines of its configuration files, in the order the server reads them.
type serverConf struct {
	args  map[string]string // -c name=value, by lower-case name
	lines []confEntry
	files int
	bytes int
}

type confEntry struct {
	name, value, source string
}

// effective returns the value the server uses for name: the command line's
// (PGC_S_ARGV outranks every file), else the last file line's, else def.
func (c *serverConf) effective(name, def string) serverSetting {
	if v, ok := c.args[name]; ok {
		return serverSetting{Name: name, Value: v, Source: sourceCommandLine}
	}
	for i := len(c.lines) - 1; i >= 0; i-- {
		if l := c.lines[i]; l.name == name {
			return serverSetting{Name: name, Value: l.value, Source: l.source}
		}
	}
	return serverSetting{Name: name, Value: def, Source: sourceDefault}
}

// readServerConf reads the settings of the postmaster running in pgdata:
// its command line from postmaster.opts, the configuration file it names
// (config_file) or the one in its -D directory, and postgresql.auto.conf.
func readServerConf(pgdata string) (*serverConf, error) {
	dir, err := filepath.Abs(pgdata)
	if err != nil {
		return nil, err
	}
	opts, err := readRegularFile(filepath.Join(dir, "postmaster.opts"), maxConfFileBytes)
	if err != nil {
		return nil, err
	}
	args, configDir := postmasterSettings(parsePostmasterOpts(opts))
	c := &serverConf{args: args}
	main, ok := args["config_file"]
	switch {
	case ok && !filepath.IsAbs(main):
		// Relative to the directory pg_ctl ran in, which nothing records.
		return nil, fmt.Errorf("config_file %q on the server's command line is relative", main)
	case !ok && filepath.IsAbs(configDir):
		main = filepath.Join(configDir, "postgresql.conf")
	case !ok:
		main = filepath.Join(dir, "postgresql.conf")
	}
	if err := c.readFile(main, "", true, 0); err != nil {
		return nil, err
	}
	// ALTER SYSTEM's file, read last (ProcessConfigFileInternal).
	if err := c.readFile(filepath.Join(dir, "postgresql.auto.conf"), "", false, 0); err != nil {
		return nil, err
	}
	return c, nil
}

// readFile adds the lines of the configuration file path, following its
// include directives, as guc-file.l's ParseConfigFile does: a relative path
// is relative to the including file's directory, a missing file is an error
// only when strict, and nesting deeper than maxConfDepth is an error.
func (c *serverConf) readFile(path, calling string, strict bool, depth int) error {
	if strings.Trim(path, " \t\r\n") == "" {
		return fmt.Errorf("%s: empty configuration file name", calling)
	}
	path = confPath(path, calling)
	if depth > maxConfDepth {
		return fmt.Errorf("%s: includes nested deeper than %d (an include loop?)", path, maxConfDepth)
	}
	if path == calling {
		return fmt.Errorf("%s includes itself", path)
	}
	if c.files++; c.files > maxConfFiles {
		return fmt.Errorf("%s: more than %d configuration files", path, maxConfFiles)
	}
	text, err := readRegularFile(path, maxConfFileBytes)
	if !strict && errors.Is(err, fs.ErrNotExist) {
		return nil // include_if_exists: "skipping missing configuration file"
	}
	if err != nil {
		return err
	}
	if c.bytes += len(text); c.bytes > maxConfTotalBytes {
		return fmt.Errorf("%s: more than %d bytes of configuration", path, maxConfTotalBytes)
	}
	lines, err := parseServerConf(text)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, l := range lines {
		var err error
		switch name := gucLower(l.name); name {
		case "include":
			err = c.readFile(l.value, path, true, depth+1)
		case "include_if_exists":
			err = c.readFile(l.value, path, false, depth+1)
		case "include_dir":
			err = c.readDir(l.value, path, depth+1)
		default:
			c.lines = append(c.lines, confEntry{name: name, value: l.value, source: fmt.Sprintf("%s:%d", path, l.line)})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readDir reads the files of an include_dir as ParseConfigDirectory does:
// names ending in .conf, not starting with a dot, no directories, sorted by
// name (strcmp), each as if included by the file with the directive.
func (c *serverConf) readDir(dir, calling string, depth int) error {
	if strings.Trim(dir, " \t\r\n") == "" {
		return fmt.Errorf("%s: empty configuration directory name", calling)
	}
	dir = confPath(dir, calling)
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if len(name) < 6 || name[0] == '.' || !strings.HasSuffix(name, ".conf") {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			continue
		}
		if err := c.readFile(path, calling, true, depth); err != nil {
			return err
		}
	}
	return nil
}

// confPath makes path absolute against the directory of the file that
// names it (AbsoluteConfigLocation); calling is absolute.
func confPath(path, calling string) string {
	if filepath.IsAbs(path) || calling == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(filepath.Dir(calling), path)
}

// readRegularFile reads a regular file of at most limit bytes. It opens
// without blocking, so that a FIFO named by a configuration file cannot hang
// the restore.
func readRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// parsePostmasterOpts splits postmaster.opts, which the postmaster writes as
// its program path followed by each argument in double quotes (CreateOptsFile
// in postmaster.c; quotes inside arguments are not escaped).
func parsePostmasterOpts(b []byte) []string {
	line := strings.TrimSuffix(string(b), "\n")
	i := strings.Index(line, ` "`)
	if i < 0 {
		return nil
	}
	rest := strings.TrimSuffix(line[i+2:], `"`)
	return strings.Split(rest, `" "`)
}

// postmasterArgOptions are the postmaster's options that take an argument
// (PostmasterMain's getopt string "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:W:-:").
const postmasterArgOptions = "BCcDdfhkNprStW-"

// postmasterSettings returns the settings of a postmaster's arguments (-c
// name=value and --name=value, with dashes in the name read as underscores,
// later ones winning), and its -D directory.
func postmasterSettings(args []string) (map[string]string, string) {
	set := map[string]string{}
	var dir string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		for j := 1; j < len(a); j++ {
			if strings.IndexByte(postmasterArgOptions, a[j]) < 0 {
				continue
			}
			var val string
			switch {
			case j+1 < len(a):
				val = a[j+1:]
			case i+1 < len(args):
				i++
				val = args[i]
			default:
				return set, dir
			}
			switch a[j] {
			case 'D':
				dir = val
			case 'c', '-':
				if name, value, ok := strings.Cut(val, "="); ok {
					set[gucLower(strings.ReplaceAll(name, "-", "_"))] = value
				}
			}
			break
		}
	}
	return set, dir
}

// gucLower folds ASCII letters only, as guc_name_compare and
// pg_strcasecmp do.
func gucLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// confLine is one "name = value" line of a configuration file.
type confLine struct {
	name, value string
	line        int
}

// parseServerConf parses the text of one configuration file as guc-file.l
// does: "name = value" or "name value", one a line; a name is an identifier
// (or qualified, ext.name); a value is an identifier, a number, an unquoted
// string of letters, digits and -._:/ (starting with a letter), or a string
// in single quotes, where a doubled quote and backslash escapes stand for
// characters; # starts a comment. Include directives are returned as lines like the
// others. Any syntax error is an error: the server refuses to start with one
// and ignores a file changed to hold one, so the file does not tell what the
// server uses.
func parseServerConf(text []byte) ([]confLine, error) {
	lx := confLexer{text: text, line: 1}
	var lines []confLine
	for {
		tok, name := lx.next()
		if tok == tokEOF {
			return lines, nil
		}
		if tok == tokEOL {
			continue
		}
		line := lx.line
		if tok != tokID && tok != tokQualifiedID {
			return nil, confSyntaxError(line, tok, name)
		}
		tok, value := lx.next()
		if tok == tokEquals {
			tok, value = lx.next()
		}
		switch tok {
		case tokString:
			value = unquoteConf(value)
		case tokID, tokInteger, tokReal, tokUnquoted:
		default:
			return nil, confSyntaxError(line, tok, value)
		}
		if tok, text := lx.next(); tok != tokEOL && tok != tokEOF {
			return nil, confSyntaxError(line, tok, text)
		}
		lines = append(lines, confLine{name: name, value: value, line: line})
	}
}

func confSyntaxError(line int, tok confToken, text string) error {
	if tok == tokEOL || tok == tokEOF {
		return fmt.Errorf("syntax error in line %d, near end of line", line)
	}
	return fmt.Errorf("syntax error in line %d, near token %q", line, text)
}

type confToken int

// The tokens of guc-file.l, in the order of its rules: of two matches of the
// same length, the earlier rule wins.
const (
	tokEOF confToken = iota
	tokEOL
	tokID
	tokQualifiedID
	tokString
	tokUnquoted
	tokInteger
	tokReal
	tokEquals
	tokError
)

// confLexer splits a configuration file into guc-file.l's tokens, taking the
// longest match at each position as flex does.
type confLexer struct {
	text []byte
	pos  int
	line int
}

func (lx *confLexer) next() (confToken, string) {
	for lx.pos < len(lx.text) {
		switch c := lx.text[lx.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			lx.pos++
		case c == '#':
			for lx.pos < len(lx.text) && lx.text[lx.pos] != '\n' {
				lx.pos++
			}
		case c == '\n':
			lx.pos++
			lx.line++
			return tokEOL, "\n"
		default:
			s := lx.text[lx.pos:]
			tok, n := tokError, 1
			for _, m := range [...]struct {
				tok confToken
				n   int
			}{
				{tokID, matchID(s)},
				{tokQualifiedID, matchQualifiedID(s)},
				{tokString, matchString(s)},
				{tokUnquoted, matchUnquoted(s)},
				{tokInteger, matchInteger(s)},
				{tokReal, matchReal(s)},
				{tokEquals, matchConfByte(s, '=')},
			} {
				if m.n > 0 && (tok == tokError || m.n > n) {
					tok, n = m.tok, m.n
				}
			}
			lx.pos += n
			return tok, string(s[:n])
		}
	}
	return tokEOF, ""
}

func isConfLetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isConfDigit(c byte) bool { return c >= '0' && c <= '9' }

func isConfHexDigit(c byte) bool {
	return isConfDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isConfUnitLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func matchConfByte(s []byte, b byte) int {
	if len(s) > 0 && s[0] == b {
		return 1
	}
	return 0
}

// matchID matches {LETTER}{LETTER_OR_DIGIT}*.
func matchID(s []byte) int {
	if len(s) == 0 || !isConfLetter(s[0]) {
		return 0
	}
	n := 1
	for n < len(s) && (isConfLetter(s[n]) || isConfDigit(s[n])) {
		n++
	}
	return n
}

// matchQualifiedID matches {ID}"."{ID}.
func matchQualifiedID(s []byte) int {
	n := matchID(s)
	if n == 0 || n == len(s) || s[n] != '.' {
		return 0
	}
	m := matchID(s[n+1:])
	if m == 0 {
		return 0
	}
	return n + 1 + m
}

// matchUnquoted matches {LETTER}({LETTER_OR_DIGIT}|[-._:/])*.
func matchUnquoted(s []byte) int {
	if len(s) == 0 || !isConfLetter(s[0]) {
		return 0
	}
	n := 1
	for n < len(s) && (isConfLetter(s[n]) || isConfDigit(s[n]) || strings.IndexByte("-._:/", s[n]) >= 0) {
		n++
	}
	return n
}

// matchString matches \'([^'\\\n]|\\.|\'\')*\' and returns the longest
// match: 'abc followed by two quotes at the end of a line is 'abc' and a
// stray quote.
func matchString(s []byte) int {
	if len(s) == 0 || s[0] != '\'' {
		return 0
	}
	longest := 0
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\n':
			return longest
		case '\\':
			if i+1 == len(s) || s[i+1] == '\n' {
				return longest
			}
			i++
		case '\'':
			longest = i + 1
			if i+1 == len(s) || s[i+1] != '\'' {
				return longest
			}
			i++ // '' stands for a quote; the string goes on
		}
	}
	return longest
}

// matchInteger matches {SIGN}?({DIGIT}+|0x{HEXDIGIT}+){UNIT_LETTER}*.
func matchInteger(s []byte) int {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	units := func(j int) int {
		for j < len(s) && isConfUnitLetter(s[j]) {
			j++
		}
		return j
	}
	best := 0
	j := i
	for j < len(s) && isConfDigit(s[j]) {
		j++
	}
	if j > i {
		best = units(j)
	}
	if i+1 < len(s) && s[i] == '0' && s[i+1] == 'x' {
		j = i + 2
		for j < len(s) && isConfHexDigit(s[j]) {
			j++
		}
		if j > i+2 {
			best = max(best, units(j))
		}
	}
	return best
}

// matchReal matches {SIGN}?{DIGIT}*"."{DIGIT}*{EXPONENT}?, which "." alone
// matches too.
func matchReal(s []byte) int {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && isConfDigit(s[i]) {
		i++
	}
	if i == len(s) || s[i] != '.' {
		return 0
	}
	i++
	for i < len(s) && isConfDigit(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && isConfDigit(s[k]) {
			k++
		}
		if k > j {
			i = k
		}
	}
	return i
}

// unquoteConf strips the quotes of a quoted value and resolves its escapes
// as DeescapeQuotedString does: \b \f \n \r \t, up to three octal digits, a
// backslash before any other character stands for it, and a doubled quote
// for one. The
// server keeps values as C strings, so a NUL ends the value.
func unquoteConf(q string) string {
	s := q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			switch c = s[i]; c {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := 0
				k := 0
				for ; k < 3 && i+k < len(s) && s[i+k] >= '0' && s[i+k] <= '7'; k++ {
					v = v<<3 + int(s[i+k]-'0')
				}
				i += k - 1
				c = byte(v)
			}
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		}
		if c == 0 {
			break
		}
		b.WriteByte(c)
	}
	return b.String()
}
