package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	dativo "github.com/dativo-io/dativo/sdk/go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The regular expressions of the built-in's connect.py, without look-arounds (RE2 has none).
var (
	uriPassword   = regexp.MustCompile(`(?i)^([a-z]+://[^:/?#@]*:)[^@]*@`)
	queryPassword = regexp.MustCompile(`(?i)([?&]password=)[^&#\s]*`)
	kvPassword    = regexp.MustCompile(`(?i)(^|[^?&\w])(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)`)
	guardMessage  = regexp.MustCompile(`"dativo: ([^\n]*)"`)
)

const mask = "***"

// redactDSN returns dsn with every password replaced by ***.
func redactDSN(dsn string) string {
	text := uriPassword.ReplaceAllString(dsn, "${1}"+mask+"@")
	text = queryPassword.ReplaceAllString(text, "${1}"+mask)
	return kvPassword.ReplaceAllString(text, "${1}${2}"+mask)
}

// redact removes the DSN's password from a message that may quote it.
func redact(text string, cfg *pgx.ConnConfig, dsn string) string {
	text = redactDSN(text)
	// Very short passwords would mangle unrelated words; libpq never echoes passwords anyway.
	if cfg != nil && len(cfg.Password) >= 3 {
		text = strings.ReplaceAll(text, cfg.Password, mask)
	}
	return text
}

func oneParagraph(text string) string { return strings.Join(strings.Fields(text), " ") }

// parseDSN builds the connection config, with the built-in's defaults for what the DSN does not set.
func parseDSN(dsn string, connectTimeout int) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, dativo.ConfigError(
			fmt.Sprintf("source.connection.dsn is not a valid libpq connection string (%s): %s",
				redactDSN(dsn), redact(oneParagraph(err.Error()), nil, dsn)),
			"Use a URI like postgresql://user:pass@host:5432/db or key=value pairs like 'host=... dbname=... user=...'.")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = time.Duration(connectTimeout) * time.Second
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "dativo"
	}
	return cfg, nil
}

func connectionHint(detail string) string {
	lowered := strings.ToLower(detail)
	switch {
	case strings.Contains(lowered, "password") || strings.Contains(lowered, "authentication"):
		return "Check the user name and password in source.connection.dsn (or PGPASSWORD / ~/.pgpass)."
	case strings.Contains(lowered, "database") && strings.Contains(lowered, "does not exist"):
		return "Create the database, or fix the database name in source.connection.dsn."
	case strings.Contains(lowered, "role") && strings.Contains(lowered, "does not exist"):
		return "Create the role, or fix the user name in source.connection.dsn."
	case strings.Contains(lowered, "ssl"):
		return "Check sslmode and the certificates in source.connection.dsn."
	}
	return "Check that the server is running and reachable at the host and port (or Unix socket directory) " +
		"in source.connection.dsn, and that no firewall blocks it."
}

// connectionFailed turns a connection error into ConnectionFailed without secrets.
func connectionFailed(err error, cfg *pgx.ConnConfig, dsn string) error {
	detail := redact(oneParagraph(err.Error()), cfg, dsn)
	return dativo.ConnectionFailed(
		fmt.Sprintf("Cannot connect to PostgreSQL at %s: %s", redactDSN(dsn), detail), connectionHint(detail))
}

// readFailed turns an error met while reading dataset into PluginFailed. Errors raised on purpose by
// the value guards of the SELECT (sql.go) carry a "dativo:" marker naming the column.
func readFailed(err error, dataset string, cfg *pgx.ConnConfig, dsn string) error {
	var typed *dativo.Error
	if errors.As(err, &typed) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	text := err.Error()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		text = pgErr.Message
	}
	if m := guardMessage.FindStringSubmatch(text); m != nil {
		return dativo.PluginFailed(
			fmt.Sprintf("Reading %s failed: %s", dataset, redact(m[1], cfg, dsn)),
			"Read the table through a 'query:' that filters or converts such values "+
				"(for example col::text, or LEAST(col, '9999-12-31') for infinite timestamps).")
	}
	return dativo.PluginFailed(fmt.Sprintf("Reading %s failed: %s", dataset, redact(oneParagraph(err.Error()), cfg, dsn)), "")
}
