package migrations

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Exec runs script, SQL kept outside the numbered migrations (the Helm
// chart's grants for the apps' PostgreSQL roles, re-applied on every
// upgrade), in one transaction under the migration lock: all of it or
// nothing, never interleaved with a migration. It records nothing in
// schema_migrations, so the script must be safe to run again.
// The lock is waited for as a Runner with default settings waits.
func Exec(ctx context.Context, conn *pgx.Conn, script string) error {
	return Runner{}.Exec(ctx, conn, script)
}

// Exec is the package's Exec, waiting for the lock up to r.LockWait.
func (r Runner) Exec(ctx context.Context, conn *pgx.Conn, script string) error {
	r = r.withDefaults()
	if err := r.lock(ctx, conn); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), sqlUnlock, LockKey) }()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: the simple protocol, so the script may hold many
		// statements.
		_, err := tx.Exec(ctx, script)
		return err
	})
}
