package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/walship/walship/internal/cli"

	"github.com/walship/walship/archive"
	"github.com/walship/walship/archive/crypt"
	"github.com/walship/walship/wal"
)

func encryptionCommand(g *globals) *cli.Command {
	archiveFlags := func(more ...cli.Flag) []cli.Flag {
		return append(append([]cli.Flag{archiveFlag()}, more...), sshFlags()...)
	}
	recipientFlags := []cli.Flag{
		&cli.StringSliceFlag{Name: "recipient", Aliases: []string{"r"},
			Usage: "age public `KEY` (age1… or age1pq1…) to encrypt to; repeatable"},
		&cli.StringFlag{Name: "recipients-file", TakesFile: true,
			Usage: "`FILE` of age public keys, one a line (# comments); also an identity file's public keys: walship encryption keygen prints them"},
		&cli.StringFlag{Name: "comment", Usage: "what the new keys are for (\"standby key\", \"offline escrow\"), kept in the key set"},
	}
	subs := []*cli.Command{
		{
			Name:      "keygen",
			Usage:     "make a new private key (an age identity file) and print its public key",
			ArgsUsage: "FILE",
			Description: `keygen writes a new age identity to FILE (mode 0600; an existing FILE is
refused) and prints its public key, which walship encryption init or add-key
takes. Keep FILE where the archive is read (the standby, the restore host)
and a copy offline: without it the archive cannot be read, by anyone.
--post-quantum makes a hybrid ML-KEM-768 + X25519 key (age1pq1…), which
needs age 1.3 or later to decrypt by hand.`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "post-quantum", Aliases: []string{"pq"}, Usage: "a post-quantum hybrid key"}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("encryption keygen takes the identity FILE to write; got %d arguments", c.NArg())
				}
				return runKeygen(g, c.Args().First(), c.Bool("post-quantum"))
			},
		},
		{
			Name:  "init",
			Usage: "encrypt the archive from now on, to the given public keys",
			Description: `init writes the archive's first key set (encryption/keys-000001.json: public
keys only). From then on every walship that writes (push, tail, backup)
encrypts every file to those keys, and every reader needs a private key
(--encryption-identity). Files archived before stay as they are: walship
refuses to serve them from an encrypted archive until walship encryption
rewrap has encrypted them, so run init on a new archive, or rewrap at once.`,
			Flags: archiveFlags(recipientFlags...),
			Action: func(c *cli.Context) error {
				return runEncryptionKeys(c.Context, g, c, "init")
			},
		},
		{
			Name:  "add-key",
			Usage: "add public keys to the archive's key set (a new key set; old files keep their keys)",
			Description: `add-key writes a new key set: the keys in force plus the given ones, minus
those named by --retire. New files are encrypted to it; old files keep the
keys they were written with and stay readable with the old identities, so
nothing is uploaded again. walship encryption status lists the files that
still need a retired key; walship encryption rewrap re-encrypts them.`,
			Flags: archiveFlags(append(slices.Clone(recipientFlags),
				&cli.StringSliceFlag{Name: "retire", Usage: "`FINGERPRINT` of a key to leave out of the new key set; repeatable"})...),
			Action: func(c *cli.Context) error { return runEncryptionKeys(c.Context, g, c, "add-key") },
		},
		{
			Name:      "retire-key",
			Usage:     "leave keys out of the archive's key set from now on",
			ArgsUsage: "FINGERPRINT...",
			Flags:     archiveFlags(),
			Action:    func(c *cli.Context) error { return runEncryptionKeys(c.Context, g, c, "retire-key") },
		},
		{
			Name:  "status",
			Usage: "show the key sets, and which files still need which key",
			Description: `status lists the archive's key sets and reads the clear header of every
stored file (no private key needed) to count the files encrypted to each
set of keys. A file "needs rewrap" when its keys are not exactly the keys in
force: it still needs a retired key, or it is not encrypted at all. --list
prints those files; --key FINGERPRINT lists the files that still need that
key, so that it can be destroyed once none are left. Exit 1 when some file
needs rewrap.`,
			Flags: archiveFlags(
				&cli.BoolFlag{Name: "list", Usage: "print every file that needs rewrap"},
				&cli.StringFlag{Name: "key", Usage: "list the files that still need the key of this `FINGERPRINT`"},
				&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}),
			Action: func(c *cli.Context) error {
				return runEncryptionStatus(c.Context, g, encStatusOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger),
					List: c.Bool("list"), Key: c.String("key"), JSON: c.Bool("json")})
			},
		},
		{
			Name:  "rewrap",
			Usage: "re-encrypt the files that still need a retired key, or are not encrypted, to the keys in force",
			Description: `rewrap re-encrypts, one file at a time, every file whose keys are not the
keys in force (see status), and files stored before encryption. Each file is
decrypted with --encryption-identity (which must hold the old keys),
encrypted to the current key set, and replaced in one atomic step: a reader
sees the old file or the new one, never none, so a standby may run
meanwhile. It is resumable: a file done is not done again, so run it again
after an interruption. Progress goes to stderr.`,
			Flags: archiveFlags(&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only list what would be re-encrypted"},
				&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}),
			Action: func(c *cli.Context) error {
				return runRewrap(c.Context, g, rewrapOptions{Archive: c.String("archive"), SSH: sshOptionsFrom(c, g.logger),
					DryRun: c.Bool("dry-run"), JSON: c.Bool("json")})
			},
		},
	}
	for _, s := range subs {
		s.OnUsageError = onUsageError
		if s.Action != nil {
			act := s.Action
			s.Action = func(c *cli.Context) error {
				if c.NArg() != 0 && s.ArgsUsage == "" {
					return usagef("encryption %s takes no arguments; got %q", s.Name, c.Args().First())
				}
				return act(c)
			}
		}
	}
	return &cli.Command{
		Name: "encryption",
		Description: `An encrypted archive holds every file (segments, .history and .backup files,
tail increments, backup data and manifests) as an age file, compressed and
then encrypted to the public keys of its key set. Writers need only the
public keys, which the archive holds (encryption/): the primary never holds
a private key, so a compromised primary cannot read the archive's history.
Readers (wait, fetch, restore, verify) take the private keys from an
identity file, --encryption-identity FILE (mode 0600).

Setting up:
   walship encryption keygen /etc/walship/archive.key     # on the standby
   walship encryption init --archive DIR -r age1…          # its public key
Rotating:
   walship encryption add-key --archive DIR -r age1new… --retire OLDFP
   walship encryption status --archive DIR --key OLDFP     # what still needs it
   walship encryption rewrap --archive DIR --encryption-identity OLD+NEW.key

Left in the clear: walship.json (the cluster's identity), encryption/ (the
public keys) and the backups' catalog (backups/<id>.json: LSNs, times,
sizes), so that push, backup and expire run without a private key.`,
		Subcommands: subs,
	}
}

// runKeygen writes a new identity file and prints its public key.
func runKeygen(g *globals, path string, pq bool) error {
	var id interface{ String() string }
	var recipient string
	if pq {
		k, err := age.GenerateHybridIdentity()
		if err != nil {
			return err
		}
		id, recipient = k, k.Recipient().String()
	} else {
		k, err := age.GenerateX25519Identity()
		if err != nil {
			return err
		}
		id, recipient = k, k.Recipient().String()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return usagef("%s exists: walship never overwrites a key; choose another file", path)
		}
		return err
	}
	fmt.Fprintf(f, "# created: %s by walship encryption keygen\n# public key: %s\n# fingerprint: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), recipient, crypt.Fingerprint(recipient), id.String())
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	fmt.Fprintf(g.stdout, "%s\n", recipient)
	fmt.Fprintf(g.stderr, "wrote the private key to %s (fingerprint %s); keep a copy offline: without it the archive cannot be read\n",
		path, crypt.Fingerprint(recipient))
	return nil
}

// recipientsFrom gathers the keys of --recipient and --recipients-file.
func recipientsFrom(c *cli.Context) ([]crypt.Key, error) {
	var texts []string
	texts = append(texts, c.StringSlice("recipient")...)
	if f := c.String("recipients-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usagef("--recipients-file: %v", err)
		}
		// An identity file of keygen (or age-keygen) names its public key
		// in a "# public key:" comment; that is what is taken from it.
		// A private key without one is refused rather than derived from.
		secrets, named := 0, 0
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if k, ok := strings.CutPrefix(line, "# public key:"); ok {
				line = strings.TrimSpace(k)
				named++
			}
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, "AGE-SECRET-KEY") {
				secrets++
				continue
			}
			texts = append(texts, line)
		}
		if secrets > named {
			return nil, usagef("--recipients-file %s holds a private key without its \"# public key:\" line: give public keys (age1…) only", f)
		}
	}
	var keys []crypt.Key
	for _, t := range texts {
		if _, err := crypt.ParseRecipient(t); err != nil {
			return nil, usageError{err}
		}
		keys = append(keys, crypt.Key{Recipient: strings.TrimSpace(t), Comment: c.String("comment")})
	}
	return keys, nil
}

// runEncryptionKeys adds a key set: the first (init), one more key
// (add-key), or one key fewer (retire-key).
func runEncryptionKeys(ctx context.Context, g *globals, c *cli.Context, op string) error {
	o := sshOptionsFrom(c, g.logger)
	st, err := openBackend(ctx, c.String("archive"), o)
	if err != nil {
		return err
	}
	defer st.Close()
	sets, err := crypt.ReadKeySets(ctx, st)
	if err != nil {
		return err
	}
	var keys []crypt.Key
	switch op {
	case "init":
		if len(sets) > 0 {
			return usagef("archive %s is encrypted already (key set %d): use walship encryption add-key", st, sets[len(sets)-1].Serial)
		}
		if keys, err = recipientsFrom(c); err != nil {
			return err
		}
		if len(keys) == 0 {
			return usagef("encryption init needs a public key: --recipient age1… (walship encryption keygen FILE makes one)")
		}
	default:
		if len(sets) == 0 {
			return usagef("archive %s is not encrypted: run walship encryption init first", st)
		}
		keys = slices.Clone(sets[len(sets)-1].Recipients)
		retire := c.StringSlice("retire")
		if op == "retire-key" {
			retire = c.Args().Slice()
			if len(retire) == 0 {
				return usagef("encryption retire-key takes the FINGERPRINT of each key to retire (walship encryption status lists them)")
			}
		} else {
			more, err := recipientsFrom(c)
			if err != nil {
				return err
			}
			if len(more) == 0 {
				return usagef("encryption add-key needs a public key: --recipient age1…")
			}
			for _, k := range more {
				if !slices.ContainsFunc(keys, func(x crypt.Key) bool { return x.Recipient == k.Recipient }) {
					keys = append(keys, k)
				}
			}
		}
		for _, fp := range retire {
			i := slices.IndexFunc(keys, func(k crypt.Key) bool { return k.Fingerprint == fp })
			if i < 0 {
				return usagef("no key of fingerprint %s in force in %s: walship encryption status lists them", fp, st)
			}
			keys = slices.Delete(keys, i, i+1)
		}
		if len(keys) == 0 {
			return usagef("that would leave no key: add the new key first (add-key -r age1… --retire %s)", retire[0])
		}
	}
	ks, err := crypt.AddKeySet(ctx, st, keys, time.Now())
	if err != nil {
		return err
	}
	if op == "init" {
		// What was stored before stays in the clear until rewrapped.
		files, err := walkFiles(ctx, st)
		if err != nil {
			return err
		}
		if n := len(files); n > 0 {
			g.logger.Warn("the archive holds files stored before encryption: walship refuses to serve them until "+
				"walship encryption rewrap has encrypted them", "files", n, "archive", st.String())
		}
	}
	fmt.Fprintf(g.stdout, "key set %d of %s: files are encrypted to %s from now on\n", ks.Serial, st, strings.Join(ks.Fingerprints(), ", "))
	return nil
}

// walkFiles lists every file of the archive that the encryption layer
// encrypts, by archive name.
func walkFiles(ctx context.Context, st archive.Storage) ([]archive.FileInfo, error) {
	var out []archive.FileInfo
	var walk func(dir string) error
	walk = func(dir string) error {
		files, err := st.List(ctx, dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			name := f.Name
			if dir != "" {
				name = dir + "/" + f.Name
			}
			if !crypt.Plain(name) {
				f.Name = name
				out = append(out, f)
			}
		}
		dirs, err := archive.ListDirs(ctx, st, dir)
		if err != nil {
			return err
		}
		for _, d := range dirs {
			sub := d
			if dir != "" {
				sub = dir + "/" + d
			}
			if sub == crypt.KeysDir {
				continue
			}
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk("")
}

type encStatusOptions struct {
	Archive string
	SSH     sshOptions
	List    bool
	Key     string
	JSON    bool
}

// encStatus is what encryption status --json prints.
type encStatus struct {
	Archive string         `json:"archive"`
	KeySets []crypt.KeySet `json:"key_sets"`
	// Active lists the fingerprints in force.
	Active []string `json:"active"`
	Files  int      `json:"files"`
	// ByKeys counts the files by the keys they are encrypted to
	// ("fp1,fp2"; "" for files not encrypted).
	ByKeys map[string]int `json:"by_keys"`
	// NeedRewrap lists the files whose keys are not those in force (with
	// --list, or those that need --key).
	NeedRewrap      []encFile `json:"need_rewrap"`
	NeedRewrapCount int       `json:"need_rewrap_count"`
}

type encFile struct {
	Name string   `json:"name"`
	Keys []string `json:"keys"` // empty: not encrypted
	Size int64    `json:"size"`
}

// scanEncryption reads the clear header of every encrypted file.
func scanEncryption(ctx context.Context, st archive.Storage) (encStatus, []encFile, error) {
	res := encStatus{Archive: st.String(), ByKeys: map[string]int{}, NeedRewrap: []encFile{}}
	sets, err := crypt.ReadKeySets(ctx, st)
	if err != nil {
		return res, nil, err
	}
	if len(sets) == 0 {
		return res, nil, fmt.Errorf("archive %s is not encrypted: walship encryption init encrypts it", st)
	}
	res.KeySets = sets
	active := sets[len(sets)-1]
	res.Active = active.Fingerprints()
	c := crypt.New(st, crypt.Config{})
	files, err := walkFiles(ctx, st)
	if err != nil {
		return res, nil, err
	}
	var need []encFile
	for _, f := range files {
		h, err := c.FileHeader(ctx, f.Name)
		if archive.IsNotExist(err) {
			continue // removed meanwhile (a standby's cleanup)
		}
		if err != nil && !errors.Is(err, crypt.ErrNotEncrypted) {
			return res, nil, fmt.Errorf("read the header of %s: %w", f.Name, err)
		}
		res.Files++
		slices.Sort(h.Keys)
		res.ByKeys[strings.Join(h.Keys, ",")]++
		if crypt.Needs(h.Keys, active) {
			need = append(need, encFile{Name: f.Name, Keys: h.Keys, Size: f.Size})
		}
	}
	res.NeedRewrapCount = len(need)
	return res, need, nil
}

func runEncryptionStatus(ctx context.Context, g *globals, opts encStatusOptions) error {
	st, err := openBackend(ctx, opts.Archive, opts.SSH)
	if err != nil {
		return err
	}
	defer st.Close()
	res, need, err := scanEncryption(ctx, st)
	if err != nil {
		return err
	}
	for _, f := range need {
		if opts.List || (opts.Key != "" && slices.Contains(f.Keys, opts.Key)) {
			res.NeedRewrap = append(res.NeedRewrap, f)
		}
	}
	if opts.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		w := g.stdout
		fmt.Fprintf(w, "archive %s\n", res.Archive)
		for _, ks := range res.KeySets {
			fmt.Fprintf(w, "key set %d (%s):", ks.Serial, ks.Created.Format(time.RFC3339))
			for _, k := range ks.Recipients {
				fmt.Fprintf(w, " %s", k.Fingerprint)
				if k.Comment != "" {
					fmt.Fprintf(w, " (%s)", k.Comment)
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "in force: %s\n", strings.Join(res.Active, ", "))
		keys := make([]string, 0, len(res.ByKeys))
		for k := range res.ByKeys {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			label := k
			if k == "" {
				label = "not encrypted"
			}
			fmt.Fprintf(w, "%d files: %s\n", res.ByKeys[k], label)
		}
		for _, f := range res.NeedRewrap {
			what := strings.Join(f.Keys, ",")
			if what == "" {
				what = "not encrypted"
			}
			fmt.Fprintf(w, "needs rewrap: %s (%s)\n", f.Name, what)
		}
		fmt.Fprintf(w, "%d of %d files need rewrap\n", res.NeedRewrapCount, res.Files)
	}
	if opts.Key != "" && len(res.NeedRewrap) > 0 {
		return fmt.Errorf("%d files still need key %s: run walship encryption rewrap", len(res.NeedRewrap), opts.Key)
	}
	if opts.Key == "" && res.NeedRewrapCount > 0 {
		return fmt.Errorf("%d files need rewrap: walship encryption rewrap re-encrypts them", res.NeedRewrapCount)
	}
	return nil
}

type rewrapOptions struct {
	Archive string
	SSH     sshOptions
	DryRun  bool
	JSON    bool
}

type rewrapResult struct {
	Archive   string   `json:"archive"`
	Rewrapped []string `json:"rewrapped"`
	Bytes     int64    `json:"bytes"`
	DryRun    bool     `json:"dry_run,omitempty"`
}

func runRewrap(ctx context.Context, g *globals, opts rewrapOptions) error {
	o := opts.SSH
	o.NoRetry = true // Replace is not retried: a failed one is done again by the next run
	st, err := openBackend(ctx, opts.Archive, o)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, ok := st.(archive.Replacer); !ok && !opts.DryRun {
		return fmt.Errorf("archive %s cannot replace a file in one step, which rewrap needs: %w", st, errors.ErrUnsupported)
	}
	_, need, err := scanEncryption(ctx, st)
	if err != nil {
		return err
	}
	res := rewrapResult{Archive: st.String(), Rewrapped: []string{}, DryRun: opts.DryRun}
	if opts.DryRun {
		for _, f := range need {
			res.Rewrapped = append(res.Rewrapped, f.Name)
			res.Bytes += f.Size
		}
		return printRewrap(g, opts, res)
	}
	cst, err := withEncryption(st, opts.SSH)
	if err != nil {
		return err
	}
	c, _ := crypt.Of(cst)
	if len(need) > 0 && opts.SSH.Encryption.Identity == "" && slices.ContainsFunc(need, func(f encFile) bool { return len(f.Keys) > 0 }) {
		return usagef("rewrap decrypts the files it re-encrypts: give --encryption-identity with the old keys")
	}
	prog := newRewrapProgress(g, len(need))
	for i, f := range need {
		if err := rewrapFile(ctx, st, c, f); err != nil {
			return fmt.Errorf("rewrap %s (%d of %d done; run rewrap again to go on): %w", f.Name, i, len(need), err)
		}
		res.Rewrapped = append(res.Rewrapped, f.Name)
		res.Bytes += f.Size
		prog(i+1, res.Bytes)
	}
	return printRewrap(g, opts, res)
}

// rewrapFile re-encrypts one file to the key set in force. A file stored
// before encryption is encrypted as it is; a WAL file gets its digest, as
// push records it, from its content.
func rewrapFile(ctx context.Context, raw archive.Storage, c *crypt.Storage, f encFile) error {
	h, err := c.FileHeader(ctx, f.Name)
	plain := errors.Is(err, crypt.ErrNotEncrypted)
	if err != nil && !plain {
		return err
	}
	open := c.Open
	if plain {
		open = raw.Open
	}
	digest := h.Digest
	if plain {
		if d, ok, err := walDigest(ctx, raw, f.Name); err != nil {
			return err
		} else if ok {
			digest = d
		}
	}
	rc, err := open(ctx, f.Name)
	if err != nil {
		return err
	}
	defer rc.Close()
	return c.Rewrap(ctx, f.Name, rc, digest)
}

// walDigest returns the digest of a WAL file stored in the clear under
// name (wal/<WAL name>[.zst]), as push records it: of the content before
// compression.
func walDigest(ctx context.Context, raw archive.Storage, name string) (string, bool, error) {
	base, ok := strings.CutPrefix(name, archive.WALDir+"/")
	if !ok {
		return "", false, nil
	}
	base, comp := archive.CutCompression(base)
	if _, err := wal.ParseName(base); err != nil {
		return "", false, nil
	}
	rc, err := raw.Open(ctx, name)
	if err != nil {
		return "", false, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if comp != archive.None {
		fr := archive.NewFrameReaderOf(comp, rc)
		defer fr.Close()
		var buf bytes.Buffer
		if _, err := fr.WriteTo(&buf); err != nil {
			return "", false, err
		}
		r = &buf
	}
	d, err := crypt.NewDigest(r)
	return d, err == nil, err
}

func newRewrapProgress(g *globals, total int) func(done int, bytes int64) {
	last := time.Now()
	return func(done int, bytes int64) {
		if time.Since(last) < time.Second && done != total {
			return
		}
		last = time.Now()
		g.logger.Info("rewrap", "done", done, "of", total, "bytes", bytes)
	}
}

func printRewrap(g *globals, opts rewrapOptions, res rewrapResult) error {
	if opts.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	verb := "re-encrypted"
	if opts.DryRun {
		verb = "would re-encrypt"
		for _, n := range res.Rewrapped {
			fmt.Fprintf(g.stdout, "would re-encrypt %s\n", n)
		}
	}
	fmt.Fprintf(g.stdout, "%s %d files (%s) of %s\n", verb, len(res.Rewrapped), humanBytes(res.Bytes), res.Archive)
	return nil
}
