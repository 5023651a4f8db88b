package dativo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind names the dativo.errors class the host raises for an [Error].
type Kind string

// The kinds of protocol.md §4.
const (
	KindConfig             Kind = "ConfigError"
	KindConnectionFailed   Kind = "ConnectionFailed"
	KindPluginFailed       Kind = "PluginFailed"
	KindSchemaMismatch     Kind = "SchemaMismatch"
	KindCommitFailed       Kind = "CommitFailed"
	KindCommitStateUnknown Kind = "CommitStateUnknown"
)

// ErrorPrefix starts the line of a Flight error message that carries a typed error to the host.
const ErrorPrefix = "DATIVO-ERROR "

// Error is a failure the host reports as the dativo.errors class named by Kind, with Message and Hint.
//
// Wrap it freely: the SDK finds it with [errors.As], uses its Kind and Hint, and the message of the
// outermost error (so context added with fmt.Errorf("...: %w", err) is kept).
type Error struct {
	Kind    Kind
	Message string
	Hint    string
}

// Error returns the message (the hint travels separately).
func (e *Error) Error() string { return e.Message }

// ConfigError reports a problem the user fixes in the job file: a bad or unknown key, a missing table.
// The host never falls back to the built-in implementation on it (the built-in would meet it too).
func ConfigError(message, hint string) *Error {
	return &Error{Kind: KindConfig, Message: message, Hint: hint}
}

// ConnectionFailed reports that the source or target cannot be reached or refused the credentials.
func ConnectionFailed(message, hint string) *Error {
	return &Error{Kind: KindConnectionFailed, Message: message, Hint: hint}
}

// PluginFailed reports any other failure of the plugin: a query that failed mid-read, a bad value, or a
// limitation of the plugin (a column type it does not read, a mode it does not write). With
// fallback: default the host then reruns the job with the built-in implementation.
func PluginFailed(message, hint string) *Error {
	return &Error{Kind: KindPluginFailed, Message: message, Hint: hint}
}

// SchemaMismatch reports data whose schema does not match what was declared or prepared.
func SchemaMismatch(message, hint string) *Error {
	return &Error{Kind: KindSchemaMismatch, Message: message, Hint: hint}
}

// CommitFailed reports a commit that published nothing; the run may be retried.
func CommitFailed(message, hint string) *Error {
	return &Error{Kind: KindCommitFailed, Message: message, Hint: hint}
}

// CommitStateUnknown reports a commit whose outcome is unknown; the user reruns with the same run id.
func CommitStateUnknown(message, hint string) *Error {
	return &Error{Kind: KindCommitStateUnknown, Message: message, Hint: hint}
}

// wireError is the JSON of a DATIVO-ERROR line.
type wireError struct {
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// toStatus turns any error into the gRPC status the host receives: the message is exactly one
// DATIVO-ERROR line (ended by a newline, so whatever a client library appends stays off that line).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if !isTyped(err) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return status.FromContextError(err).Err()
		}
		// A gRPC status already (the host went away mid-stream): pass it on unchanged.
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
			return err
		}
	}
	wire := wireError{Kind: KindPluginFailed, Message: err.Error()}
	var typed *Error
	if errors.As(err, &typed) {
		wire.Kind, wire.Hint = typed.Kind, typed.Hint
	}
	body, _ := json.Marshal(wire)
	return status.Error(codeOf(wire.Kind), ErrorPrefix+string(body)+"\n")
}

func isTyped(err error) bool {
	var typed *Error
	return errors.As(err, &typed)
}

func codeOf(kind Kind) codes.Code {
	switch kind {
	case KindConfig, KindSchemaMismatch:
		return codes.InvalidArgument
	case KindCommitFailed:
		return codes.Aborted
	default:
		return codes.Internal
	}
}

// recovered turns a panic value into PluginFailed, and prints the stack to stderr (the job's log).
func recovered(what string, value any) error {
	logf("panic in %s: %v\n%s", what, value, debug.Stack())
	return PluginFailed(fmt.Sprintf("the plugin panicked in %s: %v", what, value),
		"This is a bug in the plugin; the job's log has the Go stack trace.")
}
