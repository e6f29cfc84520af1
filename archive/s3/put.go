package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walship/walship/archive"
)

// castagnoli is the CRC-32C table, made on first use: making it computes
// the SSE 4.2 tables (about 0.2 ms), which every walship process would pay
// at start, and most calls compute no CRC-32C.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// checksum returns the x-amz-checksum-crc32c value of b.
func checksum(b []byte) string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.Checksum(b, castagnoli()))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Put stores r under name; see archive.Storage and the package comment.
// A file that fits in one part goes up in one PutObject; a larger one as
// a multipart upload, PartsInFlight parts at a time.
func (s *Storage) Put(ctx context.Context, name string, r io.Reader) (err error) {
	if err := archive.ValidName(name); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("put %s: %w", s.name+"/"+name, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	var read atomic.Int64
	pp := &pendingPut{dir: dir, name: archive.TempName(base), started: time.Now(), size: read.Load, cancel: cancel}
	s.pending.add(pp)
	defer s.pending.remove(pp)

	dirsMade := s.makeDirs(ctx, dir)
	buf := make([]byte, s.cfg.PartSize)
	n, more, err := fill(ctx, r, buf, &read)
	if derr := dirsMade(); err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	if more == nil {
		return s.putObject(ctx, name, buf[:n])
	}
	s.pending.remove(pp) // from here on, the server lists the upload
	return s.putMultipart(ctx, name, io.MultiReader(bytes.NewReader(more), r), buf, &read)
}

// fill reads r into buf until buf is full or r ends, stopping when ctx is
// done. When buf is full and r has more, more holds the byte read beyond.
func fill(ctx context.Context, r io.Reader, buf []byte, read *atomic.Int64) (n int, more []byte, err error) {
	for n < len(buf) {
		if ctx.Err() != nil {
			return n, nil, context.Cause(ctx)
		}
		m, err := r.Read(buf[n:])
		n += m
		read.Add(int64(m))
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, nil, fmt.Errorf("read source: %w", err)
		}
	}
	var one [1]byte
	for {
		if ctx.Err() != nil {
			return n, nil, context.Cause(ctx)
		}
		m, err := r.Read(one[:])
		if m == 1 {
			read.Add(1)
			return n, one[:], nil
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, nil, fmt.Errorf("read source: %w", err)
		}
	}
}

// conditional returns the headers that make a write fail when the key
// exists, when the server takes them.
func (s *Storage) conditional(h http.Header) http.Header {
	if !s.noConditional.Load() {
		h.Set("If-None-Match", "*")
	}
	return h
}

// noConditionalWrites reports whether err is the answer of a server that
// does not implement If-None-Match, and from then on leaves it out (with
// a warning, once).
func (s *Storage) noConditionalWrites(err error) bool {
	var e *Error
	if !errors.As(err, &e) || (e.Status != http.StatusNotImplemented && e.Code != "NotImplemented") {
		return false
	}
	s.noConditional.Store(true)
	s.warnOnce.Do(func() {
		s.cfg.Logger.Warn("the S3 server does not support conditional writes (If-None-Match: *): walship checks "+
			"for an existing file before each write instead, which two pushes of one file at the same moment can race; "+
			"see the README", "archive", s.name, "endpoint", s.endpoint.Host)
	})
	return true
}

// putObject stores data under name in one request.
func (s *Storage) putObject(ctx context.Context, name string, data []byte) error {
	key := s.key(name)
	sum := checksum(data)
	op := "put " + name
	for attempt := 1; ; attempt++ {
		if s.noConditional.Load() && !isReplace(ctx) {
			if err := s.refuseExisting(ctx, op, key); err != nil {
				return err
			}
		}
		h := s.conditional(http.Header{"X-Amz-Checksum-Crc32c": {sum}})
		if isReplace(ctx) {
			h.Del("If-None-Match")
		}
		resp, err := s.call(ctx, op, request{method: http.MethodPut, key: key, header: h, body: data, payloadHash: unsignedPayload})
		if err != nil && s.noConditionalWrites(err) && h.Get("If-None-Match") != "" {
			continue
		}
		if err != nil && isConflict(err) && attempt < 4 {
			// Another conditional write of the key is in progress
			// (AWS); its outcome decides ours.
			if werr := sleep(ctx, time.Duration(attempt)*200*time.Millisecond); werr != nil {
				return werr
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := verified(resp, sum, data); err != nil {
			s.deleteKey(context.WithoutCancel(ctx), op, key)
			return fmt.Errorf("%s: %w", op, err)
		}
		if s.noConditional.Load() {
			return s.checkOurs(ctx, op, key, resp.Header.Get("ETag"))
		}
		return nil
	}
}

func isConflict(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusConflict
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(d):
		return nil
	}
}

// verified checks that the server checked the body against our checksum:
// it echoes the CRC32C it verified, or (older servers, which ignore the
// header) its ETag is the body's MD5.
func verified(resp *http.Response, sum string, data []byte) error {
	if resp.Header.Get("X-Amz-Checksum-Crc32c") == sum {
		return nil
	}
	etag := strings.Trim(resp.Header.Get("ETag"), `"`)
	if md5sum := md5.Sum(data); etag == hex.EncodeToString(md5sum[:]) {
		return nil
	}
	return fmt.Errorf("the server stored the data without confirming its checksum (CRC32C %s, got %q; ETag %q): "+
		"the object was removed; use a server that supports x-amz-checksum-crc32c", sum,
		resp.Header.Get("X-Amz-Checksum-Crc32c"), etag)
}

// refuseExisting is the check a server without conditional writes gets
// before each write: fs.ErrExist when key exists.
func (s *Storage) refuseExisting(ctx context.Context, op, key string) error {
	_, err := s.head(ctx, op, key)
	switch {
	case err == nil:
		return fs.ErrExist
	case archive.IsNotExist(err):
		return nil
	}
	return err
}

// checkOurs is the check after a write on a server without conditional
// writes: if another writer's object replaced ours since, ours lost, and
// Put reports fs.ErrExist, as if it had lost the race before writing.
func (s *Storage) checkOurs(ctx context.Context, op, key, etag string) error {
	resp, err := s.head(ctx, op, key)
	if err != nil {
		return err
	}
	if etag != "" && resp.Header.Get("ETag") != etag {
		return fs.ErrExist
	}
	return nil
}

// makeDirs creates the markers of dir and its parents that this Storage
// has not seen, in the background, and returns a function that waits for
// them. A marker is the empty object "<dir>/": it lets Remove tell an
// empty directory from a missing one, as the local backend can.
func (s *Storage) makeDirs(ctx context.Context, dir string) func() error {
	var need []string
	for d := dir; d != "" && d != "."; d = path.Dir(d) {
		if _, ok := s.dirs.Load(d); !ok {
			need = append(need, d)
		}
	}
	if len(need) == 0 {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		for _, d := range need {
			if err := s.makeDir(ctx, d); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return func() error { return <-done }
}

func (s *Storage) makeDir(ctx context.Context, d string) error {
	key := s.key(d) + "/"
	op := "mkdir " + d
	_, err := s.call(ctx, op, request{method: http.MethodHead, key: key})
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		h := s.conditional(http.Header{})
		_, err = s.call(ctx, op, request{method: http.MethodPut, key: key, header: h, body: []byte{}})
		if err != nil && s.noConditionalWrites(err) {
			_, err = s.call(ctx, op, request{method: http.MethodPut, key: key, body: []byte{}})
		}
		if archive.IsExist(err) || isConflict(err) {
			err = nil // made by a concurrent Put
		}
	}
	if err == nil {
		s.dirs.Store(d, true)
	}
	return err
}

// putMultipart stores the rest of a file as a multipart upload: first
// holds the first part; r the rest. Parts go up PartsInFlight at a time,
// each with its checksum; the upload is completed with If-None-Match, and
// aborted on any failure, so that no part outlives a failed Put.
func (s *Storage) putMultipart(ctx context.Context, name string, r io.Reader, first []byte, read *atomic.Int64) error {
	key := s.key(name)
	op := "put " + name
	var created struct {
		UploadID string `xml:"UploadId"`
	}
	err := s.callXML(ctx, op, request{method: http.MethodPost, key: key, query: url.Values{"uploads": {""}},
		header: http.Header{"X-Amz-Checksum-Algorithm": {"CRC32C"}}}, &created)
	if err != nil {
		return err
	}
	if created.UploadID == "" {
		return fmt.Errorf("s3 %s: the server gave no upload ID", op)
	}
	up := &multipart{s: s, key: key, op: op, id: created.UploadID, sem: make(chan struct{}, s.cfg.PartsInFlight)}
	err = up.run(ctx, r, first, read)
	if err == nil {
		err = up.complete(ctx)
	}
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer cancel()
		if aerr := s.abort(actx, key, up.id); aerr != nil && !archive.IsNotExist(aerr) {
			s.cfg.Logger.Warn("could not abort a failed upload; cleanup removes its parts later", "archive", s.name,
				"path", name, "err", aerr)
		}
	}
	return err
}

// multipart is one multipart upload in progress.
type multipart struct {
	s       *Storage
	key, op string
	id      string
	sem     chan struct{}

	mu    sync.Mutex
	parts []completedPart
	err   error
}

type completedPart struct {
	PartNumber     int
	ETag           string
	ChecksumCRC32C string
}

// partSize is the size of part n: the configured size, doubled every
// 2000 parts, so that 10000 parts hold about 1 TiB.
func (u *multipart) partSize(n int) int {
	return u.s.cfg.PartSize << ((n - 1) / 2000)
}

func (u *multipart) run(ctx context.Context, r io.Reader, first []byte, read *atomic.Int64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	// At most PartsInFlight buffers are being sent and one is filled.
	free := make(chan []byte, cap(u.sem)+1)
	send := func(part int, data []byte) {
		u.sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-u.sem }()
			if err := u.uploadPart(ctx, part, data); err != nil {
				u.fail(err)
				cancel(err)
			}
			free <- data[:cap(data)]
		})
	}
	data := first // a full part, and r has more
	for part := 1; ; part++ {
		if part >= maxParts {
			return fmt.Errorf("file too large for one upload: more than %d parts", maxParts)
		}
		if err := u.failed(); err != nil {
			return err
		}
		send(part, data)
		buf := nextBuffer(free, u.partSize(part+1))
		n, more, err := fill(ctx, r, buf, read)
		if err != nil {
			wg.Wait()
			if ferr := u.failed(); ferr != nil {
				return ferr
			}
			return err
		}
		if n == 0 {
			break
		}
		data = buf[:n]
		if more == nil {
			send(part+1, data) // the last part
			break
		}
		r = io.MultiReader(bytes.NewReader(more), r)
	}
	wg.Wait()
	return u.failed()
}

// nextBuffer returns a buffer of size bytes, reusing a free one.
func nextBuffer(free chan []byte, size int) []byte {
	var buf []byte
	select {
	case buf = <-free:
	default:
	}
	if cap(buf) < size {
		return make([]byte, size)
	}
	return buf[:size]
}

func (u *multipart) fail(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err == nil {
		u.err = err
	}
}

func (u *multipart) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *multipart) uploadPart(ctx context.Context, part int, data []byte) error {
	sum := checksum(data)
	op := fmt.Sprintf("%s part %d", u.op, part)
	resp, err := u.s.call(ctx, op, request{method: http.MethodPut, key: u.key,
		query:  url.Values{"partNumber": {strconv.Itoa(part)}, "uploadId": {u.id}},
		header: http.Header{"X-Amz-Checksum-Crc32c": {sum}}, body: data, payloadHash: unsignedPayload})
	if err != nil {
		return err
	}
	if err := verified(resp, sum, data); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	u.mu.Lock()
	u.parts = append(u.parts, completedPart{PartNumber: part, ETag: resp.Header.Get("ETag"), ChecksumCRC32C: sum})
	u.mu.Unlock()
	return nil
}

// complete completes the upload, which gives the object its name, unless
// one exists.
func (u *multipart) complete(ctx context.Context) error {
	u.mu.Lock()
	parts := u.parts
	u.mu.Unlock()
	sortParts(parts)
	b, err := xml.Marshal(struct {
		XMLName xml.Name        `xml:"CompleteMultipartUpload"`
		Parts   []completedPart `xml:"Part"`
	}{Parts: parts})
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if u.s.noConditional.Load() && !isReplace(ctx) {
			if err := u.s.refuseExisting(ctx, u.op, u.key); err != nil {
				return err
			}
		}
		h := u.s.conditional(http.Header{"Content-Type": {"application/xml"}})
		if isReplace(ctx) {
			h.Del("If-None-Match")
		}
		resp, err := u.s.call(ctx, u.op, request{method: http.MethodPost, key: u.key,
			query: url.Values{"uploadId": {u.id}}, header: h, body: b})
		if err != nil && u.s.noConditionalWrites(err) && h.Get("If-None-Match") != "" {
			continue
		}
		if err != nil && isConflict(err) && attempt < 4 {
			if werr := sleep(ctx, time.Duration(attempt)*200*time.Millisecond); werr != nil {
				return werr
			}
			continue
		}
		if err != nil {
			return err
		}
		if u.s.noConditional.Load() {
			var res struct{ ETag string }
			_ = xml.NewDecoder(resp.Body).Decode(&res)
			return u.s.checkOurs(ctx, u.op, u.key, res.ETag)
		}
		return nil
	}
}

func sortParts(p []completedPart) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].PartNumber < p[j-1].PartNumber; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}
