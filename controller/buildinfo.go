package controller

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshplug/meshplug/internal/version"
)

// BuildInfoMetric is the name of the gauge, always 1, whose labels say which meshplug
// serves /metrics: meshplug_build_info{version, commit, go_version}.
const BuildInfoMetric = "meshplug_build_info"

var registerBuildInfo sync.Once

// registerBuildInfoMetric adds meshplug_build_info to controller-runtime's registry
// (the one /metrics serves), once per process.
func registerBuildInfoMetric() {
	registerBuildInfo.Do(func() {
		in := version.Get()
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: BuildInfoMetric,
			Help: "meshplug's release version, git commit and Go version; always 1.",
		}, []string{"version", "commit", "go_version"})
		g.WithLabelValues(in.Version, in.Commit, in.GoVersion).Set(1)
		metrics.Registry.MustRegister(g)
	})
}
