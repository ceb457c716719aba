package config

import (
	"fmt"
	"strings"

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
