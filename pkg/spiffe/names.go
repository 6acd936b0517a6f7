package spiffe

import (
	"fmt"
	"strings"
)

// Length limits from Kubernetes' validation of the same names.
const (
	maxLabelLength     = 63
	maxSubdomainLength = 253
)

// validateLabel checks a DNS-1123 label (RFC 1123, as Kubernetes applies it
// to namespace names): 1-63 characters, lowercase letters, digits and '-',
// starting and ending with a letter or digit.
func validateLabel(part, value string) error {
	if err := checkLength(part, value, maxLabelLength); err != nil {
		return err
	}
	return checkLabelChars(part, value, value)
}

// validateSubdomain checks a DNS-1123 subdomain (as Kubernetes applies it to
// service-account and node names): at most 253 characters, one or more
// labels of lowercase letters, digits and '-' joined by '.', each label
// starting and ending with a letter or digit. Like Kubernetes, it does not
// limit the length of the individual labels.
func validateSubdomain(part, value string) error {
	if err := checkLength(part, value, maxSubdomainLength); err != nil {
		return err
	}
	for label := range strings.SplitSeq(value, ".") {
		if label == "" {
			return fmt.Errorf("%s %q: must not contain an empty label (leading, trailing or doubled '.')", part, value)
		}
		if err := checkLabelChars(part, value, label); err != nil {
			return err
		}
	}
	return nil
}

func checkLength(part, value string, maxLen int) error {
	switch {
	case value == "":
		return fmt.Errorf("%s: must not be empty", part)
	case len(value) > maxLen:
		return fmt.Errorf("%s %q: must be at most %d characters, got %d", part, value, maxLen, len(value))
	}
	return nil
}

// checkLabelChars checks one non-empty label; value is the whole name, for
// the error message.
func checkLabelChars(part, value, label string) error {
	for i := 0; i < len(label); i++ {
		if !isLabelChar(label[i]) {
			return fmt.Errorf("%s %q: invalid character %q: only lowercase letters, digits and '-' are allowed", part, value, label[i])
		}
	}
	if !isAlphanumeric(label[0]) || !isAlphanumeric(label[len(label)-1]) {
		return fmt.Errorf("%s %q: must start and end with a lowercase letter or digit", part, value)
	}
	return nil
}

func isLabelChar(c byte) bool {
	return isAlphanumeric(c) || c == '-'
}

func isAlphanumeric(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
}
