package migrations

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Exec runs script, SQL kept outside the numbered migrations (the Helm
// chart's grants for the apps' PostgreSQL roles, re-applied on every
// upgrade), in one transaction under the migration lock: all of it or
// nothing, never interleaved with a migration. It records nothing in
// schema_migrations, so the script must be safe to run again.
func Exec(ctx context.Context, conn *pgx.Conn, script string) error {
	if _, err := conn.Exec(ctx, sqlLock, lockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), sqlUnlock, lockKey) }()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: the simple protocol, so the script may hold many
		// statements.
		_, err := tx.Exec(ctx, script)
		return err
	})
}
