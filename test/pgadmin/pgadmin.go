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

// CreateDatabase creates database name through the server that admin (a
// connection string to another database) reaches; it fails when name exists.
func CreateDatabase(ctx context.Context, admin, name string) error {
	return createDatabase(ctx, admin, name, false)
}

// EnsureDatabase is CreateDatabase, leaving a database name that exists alone.
func EnsureDatabase(ctx context.Context, admin, name string) error {
	return createDatabase(ctx, admin, name, true)
}

func createDatabase(ctx context.Context, admin, name string, unlessExists bool) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", Redact(admin), err)
	}
	defer conn.Close(ctx)
	if unlessExists {
		var exists bool
		if err := conn.QueryRow(ctx, sqlDatabaseExists, name).Scan(&exists); err != nil {
			return fmt.Errorf("look up database %s: %w", name, err)
		}
		if exists {
			return nil
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Migrate applies every migration to database name on admin's server and
// returns that database's connection string.
func Migrate(ctx context.Context, admin, name string) (string, error) {
	dsn, err := WithDatabase(admin, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn); err != nil {
		return "", fmt.Errorf("migrate %s: %w", name, err)
	}
	return dsn, nil
}
