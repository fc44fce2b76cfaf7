// Package pgadmin holds the connection-string and database chores the test
// tooling shares (pgtest, make run, make bench, make bench-api): pointing a
// connection string at another database, hiding its password in messages,
// and dropping a database.
package pgadmin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// WithDatabase points a connection string (URL or key=value) at database name.
func WithDatabase(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		if strings.Contains(dsn, "://") {
			return "", errors.New("parse database url: invalid connection string")
		}
		return fmt.Sprintf("%s dbname=%s", dsn, name), nil
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Redact hides the password of a URL for messages and result files.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(key=value connection string)"
	}
	return u.Redacted()
}

// DropDatabase removes database name, disconnecting its sessions, through
// the server that admin (a connection string to another database) reaches.
func DropDatabase(ctx context.Context, admin, name string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", Redact(admin), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
