package backup

// Progress receives reports while a backup or restore runs. Commands show
// them on a terminal; nil reports nowhere.
type Progress interface {
	// Report is called often, from one goroutine at a time; an
	// implementation throttles what it shows.
	Report(Status)
}

// Status is the state of a running backup or restore.
type Status struct {
	Phase string // "backup", "wal", "restore"
	// Done and Total count bytes of the data directory; Total is 0 when not
	// known.
	Done, Total int64
	// Detail says what happens now, such as the segment waited for.
	Detail string
}

func report(p Progress, s Status) {
	if p != nil {
		p.Report(s)
	}
}
