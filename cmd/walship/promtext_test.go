package main

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The text is what client_golang writes for the same metrics: families by
// name, series by label values, labels by name, escapes in HELP and in
// label values, and Prometheus's parser reads it back.
func TestPromText(t *testing.T) {
	var s promSet
	s.counter("b_total", "Counts.", 3)
	s.gauge("a", "Back\\slash and\nnewline, \"quotes\" kept.", 1, "z", "2", "y", "x")
	s.gauge("a", "ignored: the first sample's help is the family's", 0.5, "z", "10", "y", `q"uo\te`+"\n")
	s.gauge("a", "", 2, "z", "1", "y", "a b")
	s.gauge("a", "", 4, "z", "1", "y", "a")
	s.gauge("c", "Special values.", math.Inf(1))
	s.gauge("c_neg", "Special values.", math.Inf(-1))
	s.gauge("c_nan", "Special values.", math.NaN())
	s.gauge("d", "Large.", 1<<40, "segment", "000000010000000000000002")
	got := string(s.text())
	want := `# HELP a Back\\slash and\nnewline, "quotes" kept.
# TYPE a gauge
a{y="a",z="1"} 4
a{y="a b",z="1"} 2
a{y="q\"uo\\te\n",z="10"} 0.5
a{y="x",z="2"} 1
# HELP b_total Counts.
# TYPE b_total counter
b_total 3
# HELP c Special values.
# TYPE c gauge
c +Inf
# HELP c_nan Special values.
# TYPE c_nan gauge
c_nan NaN
# HELP c_neg Special values.
# TYPE c_neg gauge
c_neg -Inf
# HELP d Large.
# TYPE d gauge
d{segment="000000010000000000000002"} 1.099511627776e+12
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(got))
	if err != nil {
		t.Fatalf("Prometheus cannot parse it: %v", err)
	}
	if v := fams["a"].Metric[2].Label[0].GetValue(); v != "q\"uo\\te\n" {
		t.Errorf("label value read back as %q", v)
	}
	if fams["b_total"].Metric[0].Counter.GetValue() != 3 {
		t.Errorf("b_total is not the counter 3: %v", fams["b_total"])
	}
}

// The handler serves the text with the content type of format 0.0.4, and
// the process metrics parse.
func TestPromHandler(t *testing.T) {
	h := promHandler(func(s *promSet) {
		s.gauge("x", "X.", 1)
		collectProcess(s)
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x", "go_goroutines", "go_threads", "go_info", "process_cpu_seconds_total",
		"process_open_fds", "process_max_fds", "process_resident_memory_bytes", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if st := fams["process_start_time_seconds"]; st != nil {
		if v := st.Metric[0].Gauge.GetValue(); math.Abs(v-float64(time.Now().Unix())) > 3600 {
			t.Errorf("process_start_time_seconds = %v", v)
		}
	}
}
