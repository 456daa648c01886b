package task

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOptionsNameTheFieldAtFault(t *testing.T) {
	one, zero := 1, 0
	now := time.Now()
	many := map[string]string{}
	for i := range MaxMetadataPairs + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for want, o := range map[string]Options{
		"delay":       {Delay: &one, RunAt: &now},
		"delay ":      {Delay: &zero},
		"metadata":    {Metadata: many},
		"metadata ":   {Metadata: map[string]string{strings.Repeat("k", MaxMetadataKey+1): "v"}},
		"metadata  ":  {Metadata: map[string]string{"k": strings.Repeat("v", MaxMetadataValue+1)}},
		"metadata   ": {Metadata: map[string]string{"a=b": "v"}},
	} {
		var e *Error
		if err := o.Validate(); !errors.As(err, &e) || e.Field != strings.TrimSpace(want) {
			t.Errorf("%+v: got %v, want an error naming %s", o, err, want)
		}
	}
	ok := Options{Delay: &one, Metadata: map[string]string{"customer": "acme"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}
