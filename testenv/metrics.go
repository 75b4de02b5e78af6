package testenv

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshplug/meshplug/filters/abi"
)

// metricStore is the process-wide stats store: a name defined by several VMs (or
// several times) is one stat, like Envoy's stats scope.
type metricStore struct {
	mu    sync.Mutex
	stats map[string]*stat
}

type stat struct {
	kind  abi.MetricType
	value atomic.Int64
	hmu   sync.Mutex
	hist  []uint64
}

func (m *metricStore) init() { m.stats = map[string]*stat{} }

// Metric ids carry the type in their low 2 bits, as in Envoy (kMetricTypeMask).
const metricTypeMask = 0x3

func (v *vm) defineMetric(t abi.MetricType, name string) (uint32, abi.Status) {
	if t > abi.MetricHistogram {
		return 0, abi.StatusBadArgument
	}
	m := &v.h.metrics
	m.mu.Lock()
	st, ok := m.stats[name]
	if !ok {
		st = &stat{kind: t}
		m.stats[name] = st
	}
	m.mu.Unlock()
	v.nextMetric[t]++
	id := v.nextMetric[t]<<2 | uint32(t)
	v.metricIDs[id] = st
	return id, abi.StatusOK
}

// incrementMetric follows Envoy: counters take only positive offsets (else
// BadArgument), gauges add or subtract, histograms are BadArgument.
func (v *vm) incrementMetric(id uint32, offset int64) abi.Status {
	t := abi.MetricType(id & metricTypeMask)
	st, ok := v.metricIDs[id]
	switch t {
	case abi.MetricCounter:
		if !ok {
			return abi.StatusNotFound
		}
		if offset <= 0 {
			return abi.StatusBadArgument
		}
		st.value.Add(offset)
	case abi.MetricGauge:
		if !ok {
			return abi.StatusNotFound
		}
		st.value.Add(offset)
	default:
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

// recordMetric follows Envoy: counters add, gauges set, histograms record.
func (v *vm) recordMetric(id uint32, value uint64) abi.Status {
	st, ok := v.metricIDs[id]
	if !ok {
		return abi.StatusNotFound
	}
	switch abi.MetricType(id & metricTypeMask) {
	case abi.MetricCounter:
		st.value.Add(int64(value))
	case abi.MetricGauge:
		st.value.Store(int64(value))
	case abi.MetricHistogram:
		st.hmu.Lock()
		st.hist = append(st.hist, value)
		st.hmu.Unlock()
	default:
		return abi.StatusNotFound
	}
	return abi.StatusOK
}

// getMetric follows Envoy: counters and gauges only; histograms are BadArgument.
func (v *vm) getMetric(id uint32) (uint64, abi.Status) {
	t := abi.MetricType(id & metricTypeMask)
	if t == abi.MetricHistogram || t > abi.MetricHistogram {
		return 0, abi.StatusBadArgument
	}
	st, ok := v.metricIDs[id]
	if !ok {
		return 0, abi.StatusNotFound
	}
	return uint64(st.value.Load()), abi.StatusOK
}

// Metric returns a counter's or gauge's value, summed over all VMs. Envoy shows custom
// Wasm metrics as "wasmcustom.<name>" in its admin stats; both spellings work here.
func (h *Host) Metric(name string) (value int64, ok bool) {
	name = strings.TrimPrefix(name, "wasmcustom.")
	h.metrics.mu.Lock()
	st, ok := h.metrics.stats[name]
	h.metrics.mu.Unlock()
	if !ok || st.kind == abi.MetricHistogram {
		return 0, false
	}
	return st.value.Load(), true
}

// Histogram returns every value recorded into a histogram, in order.
func (h *Host) Histogram(name string) []uint64 {
	name = strings.TrimPrefix(name, "wasmcustom.")
	h.metrics.mu.Lock()
	st, ok := h.metrics.stats[name]
	h.metrics.mu.Unlock()
	if !ok {
		return nil
	}
	st.hmu.Lock()
	defer st.hmu.Unlock()
	return append([]uint64(nil), st.hist...)
}

// Metrics returns all counters and gauges by name.
func (h *Host) Metrics() map[string]int64 {
	h.metrics.mu.Lock()
	defer h.metrics.mu.Unlock()
	out := map[string]int64{}
	for n, st := range h.metrics.stats {
		if st.kind != abi.MetricHistogram {
			out[n] = st.value.Load()
		}
	}
	return out
}
