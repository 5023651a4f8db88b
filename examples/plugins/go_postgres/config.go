package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	dativo "github.com/dativo-io/dativo/sdk/go"
)

// settings are the keys of the job's postgres source section, the same as the built-in reader's
// (src/dativo/readers/postgres/config.py), so a job switches readers by changing only implementation.
type settings struct {
	Connection struct {
		DSN string `json:"dsn"`
	} `json:"connection"`
	Tables         []string `json:"tables"`
	Query          *string  `json:"query"`
	Numeric        string   `json:"numeric"`
	BatchSizeBytes int      `json:"batch_size_bytes"`
	BatchRows      int      `json:"batch_rows"` // postgres-python's key; accepted, not used
	ConnectTimeout int      `json:"connect_timeout"`
}

// numericPolicy says how numeric columns without a usable precision are read.
type numericPolicy struct {
	kind             string // decimal | string | float64
	precision, scale int32
}

var decimalOption = regexp.MustCompile(`^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$`)

// parseSettings decodes and validates the source section like the built-in's pydantic model does.
func parseSettings(cfg dativo.Config) (settings, numericPolicy, error) {
	// Batches are sized from the job's memory budget, as the built-in reader's are, unless the job says.
	batch := cfg.Context.BatchBytes
	if batch <= 0 {
		batch = 8 << 20
	}
	s := settings{Numeric: "decimal(38,9)", BatchSizeBytes: batch, BatchRows: 20000, ConnectTimeout: 10}
	if err := cfg.DecodeSettings(&s); err != nil {
		return s, numericPolicy{}, err
	}
	var none struct{}
	if err := cfg.DecodeOptions(&none); err != nil {
		return s, numericPolicy{}, err
	}
	if strings.TrimSpace(s.Connection.DSN) == "" {
		return s, numericPolicy{}, dativo.ConfigError("source.connection.dsn is required",
			"Add connection: {dsn: postgresql://user@host/db} (or host=... dbname=... key=value pairs).")
	}
	if s.Query != nil {
		q := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(*s.Query), ";"))
		if q == "" {
			return s, numericPolicy{}, dativo.ConfigError("source.query must not be empty", "")
		}
		s.Query = &q
	}
	if (s.Tables == nil) == (s.Query == nil) {
		return s, numericPolicy{}, dativo.ConfigError("source: set exactly one of 'tables' and 'query'", "")
	}
	if s.Tables != nil && len(s.Tables) == 0 {
		return s, numericPolicy{}, dativo.ConfigError("source.tables must list at least one table", "")
	}
	if s.BatchSizeBytes <= 0 || s.BatchRows <= 0 || s.ConnectTimeout <= 0 {
		return s, numericPolicy{}, dativo.ConfigError(
			"source.batch_size_bytes, batch_rows and connect_timeout must be greater than 0", "")
	}
	policy, err := parseNumeric(s.Numeric)
	return s, policy, err
}

func parseNumeric(text string) (numericPolicy, error) {
	text = strings.ToLower(strings.TrimSpace(text))
	if text == "string" || text == "float64" {
		return numericPolicy{kind: text}, nil
	}
	if m := decimalOption.FindStringSubmatch(text); m != nil {
		p, _ := strconv.Atoi(m[1])
		s, _ := strconv.Atoi(m[2])
		if p >= 1 && p <= 38 && s <= p {
			return numericPolicy{kind: "decimal", precision: int32(p), scale: int32(s)}, nil
		}
	}
	return numericPolicy{}, dativo.ConfigError(fmt.Sprintf(
		"source.numeric must be 'decimal(P,S)' with 1 <= P <= 38 and 0 <= S <= P, 'string' or 'float64', not %q", text), "")
}
