package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a config, at a field path such as
// `resourceList[2].selectors[0].pfNames[1]`. Path is "" for problems with the document as a whole
// (syntax errors, an empty file).
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// ErrorList is every problem found in a config, in document order. Parse returns one whenever it
// fails, so callers can list the problems one by one with errors.As.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	if len(l) == 1 {
		return l[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(l))
	for _, e := range l {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see each problem.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}
