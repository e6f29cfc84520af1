package s3

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walship/walship/archive"
)

// listResult is the answer of ListObjectsV2.
type listResult struct {
	Contents []struct {
		Key          string
		Size         int64
		LastModified time.Time
	}
	CommonPrefixes []struct {
		Prefix string
	}
	IsTruncated           bool
	NextContinuationToken string
}

// List returns the files directly inside dir; see archive.Storage. S3
// lists in the byte order of keys, which is the order of names; their
// modification times are cut to the second, as HEAD (and so Stat) gives
// them.
func (s *Storage) List(ctx context.Context, dir string) ([]archive.FileInfo, error) {
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, err
		}
	}
	prefix := s.dirKey(dir)
	var files []archive.FileInfo
	q := url.Values{"list-type": {"2"}, "prefix": {prefix}, "delimiter": {"/"}}
	for {
		var res listResult
		if err := s.callXML(ctx, "list "+dir+"/", request{method: http.MethodGet, query: q}, &res); err != nil {
			return nil, err
		}
		for _, c := range res.Contents {
			name := strings.TrimPrefix(c.Key, prefix)
			if name == "" || strings.HasPrefix(name, ".") || strings.Contains(name, "/") {
				continue // the directory's marker, or no file of walship's
			}
			files = append(files, archive.FileInfo{Name: name, Size: c.Size, ModTime: c.LastModified.Truncate(time.Second)})
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			break
		}
		q.Set("continuation-token", res.NextContinuationToken)
	}
	slices.SortFunc(files, func(a, b archive.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// listKeys returns up to max keys starting with prefix, at any depth.
func (s *Storage) listKeys(ctx context.Context, op, prefix string, max int) ([]string, error) {
	q := url.Values{"list-type": {"2"}, "prefix": {prefix}, "max-keys": {strconv.Itoa(max)}}
	var res listResult
	if err := s.callXML(ctx, op, request{method: http.MethodGet, query: q}, &res); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(res.Contents))
	for _, c := range res.Contents {
		keys = append(keys, c.Key)
	}
	return keys, nil
}

// callXML makes a request and decodes its XML answer into v.
func (s *Storage) callXML(ctx context.Context, op string, r request, v any) error {
	resp, err := s.call(ctx, op, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := xml.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("s3 %s: the server's answer is not S3's XML (is --s3-endpoint an S3 server?): %w", op, err)
	}
	return nil
}

var _ archive.DirLister = (*Storage)(nil)

// ListDirs returns the directories directly inside dir, the key prefixes
// S3 groups under it; see archive.DirLister. A directory is there while
// any file, or its marker, is.
func (s *Storage) ListDirs(ctx context.Context, dir string) ([]string, error) {
	if dir != "" {
		if err := archive.ValidName(dir); err != nil {
			return nil, err
		}
	}
	prefix := s.dirKey(dir)
	var dirs []string
	q := url.Values{"list-type": {"2"}, "prefix": {prefix}, "delimiter": {"/"}}
	for {
		var res listResult
		if err := s.callXML(ctx, "list directories in "+dir+"/", request{method: http.MethodGet, query: q}, &res); err != nil {
			return nil, err
		}
		for _, p := range res.CommonPrefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(p.Prefix, prefix), "/")
			if name != "" && !strings.HasPrefix(name, ".") && !strings.Contains(name, "/") {
				dirs = append(dirs, name)
			}
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			break
		}
		q.Set("continuation-token", res.NextContinuationToken)
	}
	slices.Sort(dirs)
	return dirs, nil
}
