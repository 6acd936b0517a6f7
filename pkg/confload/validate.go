package confload

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// FieldError says which setting is wrong, its value and why. Use the flag
// name as Field: it is what an operator sees in --help, and its
// environment variable and YAML key follow from it.
type FieldError struct {
	Field  string
	Value  any
	Reason string
}

func (e *FieldError) Error() string {
	if s, ok := e.Value.(string); ok {
		return fmt.Sprintf("%s %q: %s", e.Field, s, e.Reason)
	}
	return fmt.Sprintf("%s %v: %s", e.Field, e.Value, e.Reason)
}

// FieldErr returns a *FieldError. Validate methods typically collect
// several with errors.Join, so an operator sees every problem at once.
func FieldErr(field string, value any, reason string) error {
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// NonEmpty requires a non-blank string.
func NonEmpty(field, value string) error {
	if strings.TrimSpace(value) == "" {
		return FieldErr(field, value, "must be set")
	}
	return nil
}

// HostPort requires host:port with a numeric port; the host may be empty
// (all interfaces) and port 0 means a random one.
func HostPort(field, value string) error {
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		return FieldErr(field, value, "must be host:port")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return FieldErr(field, value, "port must be a number from 0 to 65535")
	}
	return nil
}

// OneOf requires value to be one of allowed.
func OneOf(field, value string, allowed ...string) error {
	if slices.Contains(allowed, value) {
		return nil
	}
	return FieldErr(field, value, "must be one of "+strings.Join(allowed, ", "))
}

// number is what the numeric checks accept, time.Duration included.
type number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 |
		~float32 | ~float64
}

// Positive requires value > 0.
func Positive[T number](field string, value T) error {
	if value > 0 {
		return nil
	}
	return FieldErr(field, value, "must be greater than 0")
}

// InRange requires lo <= value <= hi.
func InRange[T number](field string, value, lo, hi T) error {
	if value >= lo && value <= hi {
		return nil
	}
	return FieldErr(field, value, fmt.Sprintf("must be between %v and %v", lo, hi))
}
