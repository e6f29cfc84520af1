package main

import (
	"fmt"
	"strings"
)

// exporterMetric describes one metric of walship exporter. The list is
// the one place they are named: the collector, --help and the test that
// the README documents each of them read it.
type exporterMetric struct {
	name   string
	labels []string // after "cluster", which every metric but walship_repo_* has
	help   string
}

// exporterMetrics returns the metrics of walship exporter. Timestamps are
// seconds since the epoch; LSNs are bytes (a float64 holds them exactly up
// to 8 PiB of WAL). A function, not a variable: walship push must not pay
// for building the list.
func exporterMetrics() []exporterMetric {
	return []exporterMetric{
		{"walship_up", nil, "1 if the last refresh read the cluster's archive, 0 if it failed (the other walship_* metrics then keep the values of the last refresh that worked)."},
		{"walship_scrape_errors_total", nil, "Refreshes of the cluster's archive that failed."},
		{"walship_last_refresh_timestamp_seconds", nil, "When a refresh last read the cluster's archive."},
		{"walship_refresh_duration_seconds", nil, "How long the last refresh of the cluster's archive took."},
		{"walship_archive_info", []string{"system_identifier", "pg_version", "wal_segment_size"}, "The cluster's identity, from walship.json; always 1."},

		{"walship_backups", nil, "Complete backups."},
		{"walship_backups_incomplete", nil, "Backups that started and did not complete: interrupted, or running now."},
		{"walship_backups_unusable", nil, "Complete backups that cannot recover to the end of the archive: a segment of their WAL chain is missing, or they cannot recover onto the latest timeline."},
		{"walship_backup_info", []string{"backup", "id", "kind", "from", "timeline"}, "The newest (backup=\"newest\") and the oldest (backup=\"oldest\") complete backup; always 1. kind is full; from is primary or standby."},
		{"walship_backup_completion_timestamp_seconds", []string{"backup"}, "When the newest or the oldest complete backup ended."},
		{"walship_backup_duration_seconds", []string{"backup"}, "How long the newest or the oldest complete backup took."},
		{"walship_backup_size_bytes", []string{"backup"}, "Bytes of the newest or the oldest complete backup as PostgreSQL sent them."},
		{"walship_backup_stored_bytes", []string{"backup"}, "Bytes the newest or the oldest complete backup takes in the archive."},

		{"walship_wal_newest_segment_info", []string{"segment", "timeline"}, "The newest segment archived whole, on the newest timeline that has one; always 1."},
		{"walship_wal_archived_lsn", nil, "Where the archived WAL ends: the end of the newest segment, or of the tail increments after it (walship tail)."},
		{"walship_wal_newest_archived_timestamp_seconds", nil, "When the newest segment was archived (its modification time in the archive)."},
		{"walship_wal_segments", []string{"timeline"}, "Segments archived on the timeline."},
		{"walship_wal_stored_bytes", []string{"timeline"}, "Bytes the timeline's segments take in the archive."},
		{"walship_wal_gaps", []string{"timeline"}, "Runs of missing segments between the timeline's first and last archived one."},
		{"walship_wal_missing_segments", []string{"timeline"}, "Segments missing between the timeline's first and last archived one."},
		{"walship_wal_diverged_segments", nil, "Segments archived on a timeline after a newer timeline left it: two servers with diverged histories archive here."},

		{"walship_pg_up", nil, "With a connection string: 1 if the last query of the server worked."},
		{"walship_pg_in_recovery", nil, "With a connection string: 1 if the server is a standby; archive lag is measured on a primary only."},
		{"walship_pg_archiver_archived_total", nil, "pg_stat_archiver.archived_count: files the server archived since its statistics were reset."},
		{"walship_pg_archiver_failed_total", nil, "pg_stat_archiver.failed_count: failed archive_command calls since the statistics were reset."},
		{"walship_pg_archiver_last_archived_timestamp_seconds", nil, "pg_stat_archiver.last_archived_time."},
		{"walship_pg_archiver_last_failure_timestamp_seconds", nil, "pg_stat_archiver.last_failed_time."},
		{"walship_pg_flush_lsn", nil, "The primary's pg_current_wal_flush_lsn()."},
		{"walship_archive_lag_bytes", nil, "WAL the primary has flushed and the archive lacks: walship_pg_flush_lsn - walship_wal_archived_lsn."},
		{"walship_archive_lag_seconds", nil, "How long the archive has lacked WAL the primary had flushed, as the exporter saw it (counted from its first refresh that saw the WAL missing); 0 when the archive holds everything flushed. This is the recovery point objective: what a loss of the primary now would lose."},

		{"walship_repo_up", nil, "With --repo: 1 if the last listing of the repository's clusters worked. No cluster label."},
		{"walship_repo_clusters", nil, "With --repo: the cluster archives found in the repository. No cluster label."},
	}
}

// labelNames returns the names of m's labels in the order collect passes
// their values: cluster first, but for walship_repo_*.
func (m exporterMetric) labelNames() []string {
	if strings.HasPrefix(m.name, "walship_repo_") {
		return m.labels
	}
	return append([]string{"cluster"}, m.labels...)
}

// kind is the TYPE of m: a name in _total is a counter.
func (m exporterMetric) kind() promKind {
	if strings.HasSuffix(m.name, "_total") {
		return promCounter
	}
	return promGauge
}

// exporterDescs returns the exporter metrics by name.
func exporterDescs() map[string]exporterMetric {
	descs := map[string]exporterMetric{}
	for _, m := range exporterMetrics() {
		descs[m.name] = m
	}
	return descs
}

// exporterMetricsHelp lists the metrics for --help.
func exporterMetricsHelp() string {
	var b strings.Builder
	for _, m := range exporterMetrics() {
		name := m.name
		if len(m.labels) > 0 {
			name += "{" + strings.Join(m.labels, ",") + "}"
		}
		fmt.Fprintf(&b, "   %s\n", name)
		line := "     "
		for _, w := range strings.Fields(m.help) {
			if len(line)+1+len(w) > 78 {
				b.WriteString(line + "\n")
				line = "     "
			}
			line += " " + w
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
