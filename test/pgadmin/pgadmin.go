// Package pgadmin holds the connection-string and database chores the test
// tooling shares (pgtest, make run, make bench, make bench-api): pointing a
// connection string at another database, hiding its password in messages,
// and creating, migrating and dropping a database.
package pgadmin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gpufleet/telemetry/migrations"
)

// sqlDatabaseExists tells whether database $1 exists.
const sqlDatabaseExists = `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`

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

// withConn runs f on a connection to dsn (for the chores, admin: a
// connection string to another database than the one they touch), closed
// when f returns.
func withConn(ctx context.Context, dsn string, f func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", Redact(dsn), err)
	}
	defer conn.Close(ctx)
	return f(conn)
}

// exec runs one statement on admin's server; what names it in the error.
func exec(ctx context.Context, admin, what, stmt string) error {
	return withConn(ctx, admin, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// DropDatabase removes database name, disconnecting its sessions, through
// the server that admin (a connection string to another database) reaches.
func DropDatabase(ctx context.Context, admin, name string) error {
	return exec(ctx, admin, "drop database "+name, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// CreateDatabase creates database name through the server that admin (a
// connection string to another database) reaches; it fails when name exists.
func CreateDatabase(ctx context.Context, admin, name string) error {
	return CreateDatabaseFrom(ctx, admin, name, "")
}

// CreateDatabaseFrom is CreateDatabase copying database template ("": the
// server's default, template1), which no session may be connected to while
// it is copied.
func CreateDatabaseFrom(ctx context.Context, admin, name, template string) error {
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		stmt += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	return exec(ctx, admin, "create database "+name, stmt)
}

// RenameDatabase renames database from to to; it fails when to exists
// (SQLSTATE 42P04, duplicate_database).
func RenameDatabase(ctx context.Context, admin, from, to string) error {
	return exec(ctx, admin, "rename database "+from+" to "+to,
		"ALTER DATABASE "+pgx.Identifier{from}.Sanitize()+" RENAME TO "+pgx.Identifier{to}.Sanitize())
}

// DatabaseExists tells whether database name is on admin's server.
func DatabaseExists(ctx context.Context, admin, name string) (bool, error) {
	var exists bool
	err := withConn(ctx, admin, func(conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, sqlDatabaseExists, name).Scan(&exists); err != nil {
			return fmt.Errorf("look up database %s: %w", name, err)
		}
		return nil
	})
	return exists, err
}

// EnsureDatabase is CreateDatabase, leaving a database name that exists alone.
func EnsureDatabase(ctx context.Context, admin, name string) error {
	exists, err := DatabaseExists(ctx, admin, name)
	if err != nil || exists {
		return err
	}
	return CreateDatabase(ctx, admin, name)
}

// Migrate applies every migration to database name on admin's server and
// returns that database's connection string.
func Migrate(ctx context.Context, admin, name string) (string, error) {
	dsn, err := WithDatabase(admin, name)
	if err != nil {
		return "", err
	}
	return dsn, withConn(ctx, dsn, func(conn *pgx.Conn) error {
		if _, err := migrations.Up(ctx, conn); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		return nil
	})
}
