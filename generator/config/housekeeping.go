package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// validatePrune checks the pruner's settings as the API server would its
// CronJob's schedule (robfig/cron, the parser Kubernetes uses).
func validatePrune(p Prune) []FieldError {
	if !p.Enabled {
		return nil
	}
	var errs []FieldError
	if _, err := cron.ParseStandard(p.Schedule); err != nil || strings.Contains(p.Schedule, "TZ=") {
		errs = append(errs, FieldError{Path: "prune.schedule", Message: fmt.Sprintf("%q is not a CronJob schedule (%v); use five fields, e.g. \"17 * * * *\" for hourly, or @hourly, @daily", p.Schedule, err)})
	}
	for _, f := range []struct {
		path string
		n    int
	}{{"prune.keepSucceeded", p.KeepSucceeded}, {"prune.keepFailed", p.KeepFailed}} {
		if f.n < 0 || f.n > 1000 {
			errs = append(errs, FieldError{Path: f.path, Message: fmt.Sprintf("%d is out of range; use 0 to 1000", f.n)})
		}
	}
	for _, m := range validation.IsDNS1123Subdomain(p.ServiceAccount) {
		errs = append(errs, FieldError{Path: "prune.serviceAccount", Message: fmt.Sprintf("%q is not a ServiceAccount name: %s", p.ServiceAccount, m)})
	}
	return errs
}

// validateNodeLoss checks the lost-node watcher's settings.
func validateNodeLoss(n NodeLoss) []FieldError {
	if !n.Enabled {
		return nil
	}
	var errs []FieldError
	if d, err := time.ParseDuration(n.After); err != nil || d < 30*time.Second || d > time.Hour || d%time.Second != 0 {
		errs = append(errs, FieldError{Path: "nodeLoss.after", Message: fmt.Sprintf("%q is not a duration of whole seconds from 30s to 1h; use e.g. \"2m\" (nodes go Ready=Unknown 40s after their last status, so less would fail pods on a short network blip)", n.After)})
	}
	for _, m := range validation.IsDNS1123Subdomain(n.ServiceAccount) {
		errs = append(errs, FieldError{Path: "nodeLoss.serviceAccount", Message: fmt.Sprintf("%q is not a ServiceAccount name: %s", n.ServiceAccount, m)})
	}
	return errs
}
