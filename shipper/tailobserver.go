package shipper

import "github.com/walship/walship/wal"

// TailObserver is told what a Tail does as it does it, for metrics. Its
// methods are called from the goroutine running the Tail, between archive
// operations, so they must return quickly; a Tail with a nil Observer skips
// them.
type TailObserver interface {
	// Shipped is called after each increment is stored: bytes of segment
	// up to end are in the archive now. walBytes is the increment's WAL,
	// storedBytes its size in the archive after compression.
	Shipped(segment string, end wal.LSN, walBytes, storedBytes int64)

	// Lag is called after every poll of the flush position, whether or not
	// it succeeded, so that a Tail that cannot ship still reports a lag
	// that grows.
	Lag(TailLag)

	// ArchiveError is called for each archive operation of the Tail that
	// failed, other than for a ctx that ended. The Tail retries it.
	ArchiveError(err error)

	// SegmentArchived is called when all of a segment is in the archive and
	// the Tail moves on to the next one: the segment was archived whole, or
	// its increments reach its end. PostgreSQL's archive_command usually
	// archives a segment only after the Tail has moved on, so waiting for
	// the whole file would leave this behind by one segment or more.
	SegmentArchived(segment string)
}

// TailLag is how far a Tail's archive is behind the server.
type TailLag struct {
	// Flush is the server's flush position as of the last poll that read
	// it.
	Flush wal.LSN
	// Shipped is where the WAL in the archive ends, on the timeline
	// being shipped. It is zero until the Tail has found where the
	// archive's increments end.
	Shipped wal.LSN
	// Bytes is how much WAL was flushed and not shipped, as of the last
	// poll that read the flush position; zero while Shipped is.
	Bytes int64
	// Seconds is the time since everything flushed was last shipped, or
	// since Run started. It grows while the server or the archive fails;
	// on a standby waiting to be promoted it stays zero.
	Seconds float64
}
