// Package s3 is the archive backend for a prefix of a bucket on S3 or an
// S3-compatible server (versitygw, MinIO, Ceph RGW, Garage…):
// s3://bucket/prefix. One prefix holds one cluster's archive, laid out as a
// local one (walship.json, wal/, backups/), so clusters share a bucket
// under different prefixes.
//
// # Client
//
// The package speaks S3's REST API itself, with Signature Version 4 on
// net/http, rather than through the AWS SDK (aws-sdk-go-v2 config v1.33.18,
// service/s3 v1.114.10): in a probe program, linking them took a process
// from 2.8 ms to 10 ms (an 11 MB binary, 2.7 ms of package init), and
// loading the configuration and making a client to 15-19 ms, while
// PostgreSQL starts one walship process per WAL file. The client here adds
// no package init of note. Credentials come from the chain the SDKs use:
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, a web
// identity token (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, as on
// EKS), the profile of ~/.aws/credentials and ~/.aws/config (AWS_PROFILE;
// keys or credential_process), the container endpoint (ECS), and the
// instance role (IMDSv2). A profile that assumes a role with role_arn and
// source_profile, and SSO profiles, are not supported: export their keys
// or use credential_process. The region and endpoint come from Config,
// then AWS_REGION/AWS_DEFAULT_REGION and AWS_ENDPOINT_URL_S3/
// AWS_ENDPOINT_URL, then the profile's region and endpoint_url.
//
// The backend does not retry (archive.Retry does), and every request is
// bounded by Config.Timeout: connecting, waiting for an answer, and each
// wait for more bytes of an object being read.
//
// # What S3 guarantees, and how the contract is kept
//
// S3 (since 2020) and the servers above are strongly consistent: a write
// that succeeded is seen by every later read and listing. Objects appear
// whole or not at all; there is no rename, and no directory.
//
//   - Put never replaces: every write that names an object is conditional,
//     If-None-Match: *, which the server evaluates atomically with the
//     write (PutObject, and CompleteMultipartUpload for large files); the
//     loser of a race gets 412 Precondition Failed, which is fs.ErrExist.
//     AWS answers 409 while a conflicting conditional write is in
//     progress; Put asks again, and the other write's outcome decides.
//   - A server that answers 501 Not Implemented to If-None-Match gets a
//     HEAD before the write and another after it (warned about once).
//     The race left is two Puts of one name, neither seeing the other's
//     object at its first HEAD, with the first one's second HEAD made
//     before the second one's write lands: both succeed, and the later
//     object replaces the earlier. If the second HEAD sees the other
//     object, its Put reports fs.ErrExist and the pusher compares
//     contents, as after a lost race. A server that ignores the header
//     without saying so cannot be told apart, and has that race as well.
//   - Put checks its data end to end: each request carries the
//     x-amz-checksum-crc32c of its body, which the server verifies before
//     storing it, and Put requires the server to confirm it (or its ETag
//     to be the body's MD5, for servers that predate the header).
//   - A Put reads its input into a buffer of Config.PartSize (20 MiB): a
//     file that fits, every WAL segment of the default size, goes up in
//     one PutObject, compressible or not; a larger one as a multipart
//     upload of parts of that size, PartsInFlight (2) sent at a time, so
//     memory stays below
//     (PartsInFlight+1) × PartSize. Parts double in size every 2000 parts:
//     one file may reach about 1 TiB.
//   - Nothing is visible under a name before it is complete: a failed or
//     cancelled Put sends no object, and aborts its multipart upload. A
//     killed process leaves its upload's parts, never listed; ListTemp
//     shows such uploads as temporary files (their size the parts'
//     bytes, their time the last part's), and RemoveTemp aborts them,
//     which is what walship cleanup and expire do with old ones. A Put of
//     this process still reading its input is listed too, and removing
//     it cancels it: it has no server-side state yet.
//   - "Not found" is said only for a missing key (NoSuchKey), in a bucket
//     known to exist: a HEAD answer 404 carries no body, so the first one
//     is checked with a listing of the bucket (whose error has a body). A missing bucket, bad credentials, a
//     wrong region, a TLS failure, timeouts and unreachable servers are
//     errors, each with its own message saying what to do; only the
//     transient ones match archive.ErrUnavailable.
//   - Directories: the first Put into a directory also writes its marker,
//     the empty object "dir/" (a HEAD when it exists; known markers are
//     remembered), so that Remove of a directory behaves as on a file
//     system: it deletes the marker once no file is left below, refuses
//     while one is, and reports fs.ErrNotExist when there is neither.
//     List skips markers. ListDirs (archive.DirLister) lists the
//     prefixes S3 groups under a directory, so a bucket of several
//     clusters serves as a repository.
//
// S3 keeps no permission bits: FileInfo.Mode is zero and --file-mode does
// not apply; access is the bucket policy's business. Watch is not
// supported: waiting callers poll.
package s3
