package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walship/walship/archive"
)

// The temporary files of an S3 archive (archive.TempFiles) are of two
// kinds. On the server, the multipart uploads not completed: a Put of a
// large file that is running, or that a killed process left behind, its
// parts stored and billed but never listed. In this process, the Puts
// still reading their input, which have sent nothing yet and leave
// nothing behind if killed. Both get a name of TempName's form, the
// random part derived from the upload ID (or drawn for a pending Put).

// pendingPuts are the Puts of a Storage that have not started an upload.
type pendingPuts struct {
	mu   sync.Mutex
	puts map[*pendingPut]bool
}

// pendingPut is one Put reading its input. Removing it as a temporary
// file cancels it.
type pendingPut struct {
	dir, name string // name is TempName's
	started   time.Time
	size      func() int64
	cancel    context.CancelCauseFunc
}

// errTempRemoved is why a Put fails whose temporary file was removed.
var errTempRemoved = errors.New("its temporary file was removed (by cleanup or expire)")

func (p *pendingPuts) add(pp *pendingPut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.puts == nil {
		p.puts = map[*pendingPut]bool{}
	}
	p.puts[pp] = true
}

func (p *pendingPuts) remove(pp *pendingPut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.puts, pp)
}

// under returns the pending Puts in dir and below.
func (p *pendingPuts) under(dir string) []archive.TempFile {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []archive.TempFile
	for pp := range p.puts {
		if inDir(pp.dir, dir) {
			out = append(out, archive.TempFile{Dir: pp.dir,
				FileInfo: archive.FileInfo{Name: pp.name, Size: pp.size(), ModTime: pp.started}})
		}
	}
	return out
}

// take removes and cancels the pending Put dir/name, if there is one.
func (p *pendingPuts) take(dir, name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pp := range p.puts {
		if pp.dir == dir && pp.name == name {
			delete(p.puts, pp)
			pp.cancel(errTempRemoved)
			return true
		}
	}
	return false
}

func inDir(d, dir string) bool {
	return dir == "" || d == dir || strings.HasPrefix(d, dir+"/")
}

// uploadTempName is the temporary name of the upload id of base.
func uploadTempName(base, id string) string {
	sum := sha256.Sum256([]byte(id))
	return "." + base + ".tmp." + hex.EncodeToString(sum[:8])
}

// uploadsResult is the answer of ListMultipartUploads.
type uploadsResult struct {
	Uploads []struct {
		Key       string
		UploadID  string `xml:"UploadId"`
		Initiated time.Time
	} `xml:"Upload"`
	IsTruncated        bool
	NextKeyMarker      string
	NextUploadIDMarker string `xml:"NextUploadIdMarker"`
}

// partsResult is the answer of ListParts.
type partsResult struct {
	Parts []struct {
		Size         int64
		LastModified time.Time
	} `xml:"Part"`
	IsTruncated          bool
	NextPartNumberMarker string
}

// upload is one multipart upload in progress.
type upload struct {
	dir, base, id string
	initiated     time.Time
}

// uploads lists the multipart uploads whose key starts with prefix and
// names a file of the archive.
func (s *Storage) uploads(ctx context.Context, op, prefix string) ([]upload, error) {
	var out []upload
	q := url.Values{"uploads": {""}, "prefix": {prefix}}
	for {
		var res uploadsResult
		if err := s.callXML(ctx, op, request{method: http.MethodGet, query: q}, &res); err != nil {
			return nil, err
		}
		for _, u := range res.Uploads {
			rel, ok := strings.CutPrefix(u.Key, s.root)
			if !ok || archive.ValidName(rel) != nil {
				continue
			}
			dir := path.Dir(rel)
			if dir == "." {
				dir = ""
			}
			out = append(out, upload{dir: dir, base: path.Base(rel), id: u.UploadID, initiated: u.Initiated})
		}
		if !res.IsTruncated || (res.NextKeyMarker == "" && res.NextUploadIDMarker == "") {
			return out, nil
		}
		q.Set("key-marker", res.NextKeyMarker)
		q.Set("upload-id-marker", res.NextUploadIDMarker)
	}
}

// parts sums up the parts stored of an upload: their bytes, and when the
// last one was written.
func (s *Storage) parts(ctx context.Context, u upload) (int64, time.Time, error) {
	key := s.key(path.Join(u.dir, u.base))
	var size int64
	last := u.initiated
	q := url.Values{"uploadId": {u.id}}
	for {
		var res partsResult
		if err := s.callXML(ctx, "list parts of "+key, request{method: http.MethodGet, key: key, query: q}, &res); err != nil {
			return 0, time.Time{}, err
		}
		for _, p := range res.Parts {
			size += p.Size
			if p.LastModified.After(last) {
				last = p.LastModified
			}
		}
		if !res.IsTruncated || res.NextPartNumberMarker == "" {
			return size, last, nil
		}
		q.Set("part-number-marker", res.NextPartNumberMarker)
	}
}

// ListTemp returns the multipart uploads not completed in dir and below,
// and the Puts of this process still reading; see archive.TempFiles and
// the comment above. An upload's ModTime is when its last part was
// stored.
func (s *Storage) ListTemp(ctx context.Context, dir string) ([]archive.TempFile, error) {
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, err
		}
	}
	ups, err := s.uploads(ctx, "list uploads in "+dir+"/", s.dirKey(dir))
	if err != nil {
		return nil, err
	}
	files := s.pending.under(dir)
	for _, u := range ups {
		size, mod, err := s.parts(ctx, u)
		if archive.IsNotExist(err) {
			continue // completed or aborted since
		}
		if err != nil {
			return nil, err
		}
		files = append(files, archive.TempFile{Dir: u.dir,
			FileInfo: archive.FileInfo{Name: uploadTempName(u.base, u.id), Size: size, ModTime: mod.Truncate(time.Second)}})
	}
	slices.SortFunc(files, func(a, b archive.TempFile) int {
		if c := strings.Compare(a.Dir, b.Dir); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return files, nil
}

// RemoveTemp aborts the multipart upload that ListTemp named name in dir,
// which deletes its parts, or cancels the Put of this process of that
// name; see archive.TempFiles.
func (s *Storage) RemoveTemp(ctx context.Context, dir, name string) error {
	if err := archive.CheckTempName(dir, name); err != nil {
		return err
	}
	if s.pending.take(dir, name) {
		return nil
	}
	base := strings.TrimPrefix(name[:strings.LastIndex(name, ".tmp.")], ".")
	missing := &fs.PathError{Op: "remove", Path: s.name + "/" + path.Join(dir, name), Err: fs.ErrNotExist}
	if archive.ValidName(base) != nil {
		return missing
	}
	key := s.key(path.Join(dir, base))
	ups, err := s.uploads(ctx, "list uploads of "+key, key)
	if err != nil {
		return err
	}
	for _, u := range ups {
		if u.dir == dir && u.base == base && uploadTempName(u.base, u.id) == name {
			return s.abort(ctx, key, u.id)
		}
	}
	return missing
}

// abort aborts an upload; its parts go.
func (s *Storage) abort(ctx context.Context, key, id string) error {
	_, err := s.call(ctx, "abort upload of "+key, request{method: http.MethodDelete, key: key, query: url.Values{"uploadId": {id}}})
	return err
}
