package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/adapters/postgres"
)

// sqlExplainPage is EXPLAIN of the store's page query, with the arguments
// the store passes for a page: limit+1 rows after a cursor.
const sqlExplainPage = `EXPLAIN (ANALYZE, BUFFERS, SETTINGS) ` + postgres.QueryTelemetrySQL

// plans are the query plans of a first and a second page of one window.
type plans struct {
	FirstPage  string `json:"first_page"`
	SecondPage string `json:"second_page"`
}

// explain runs the page query of a random window twice under EXPLAIN
// ANALYZE: from the start, and after the first page's last row.
func explain(ctx context.Context, pool *pgxpool.Pool, d *dataset, span, limit int64, seed uint64) (plans, error) {
	rng := rand.New(rand.NewPCG(seed, 0xe9))
	win := d.windowFor(rng.IntN(len(d.gpus)), rng.Int64N(d.maxWindowStart(span)+1), span)
	gpu := d.gpus[win.gpu].gpu.UUID
	start := pgtype.Timestamptz{Time: d.at(win.first), Valid: true}
	end := pgtype.Timestamptz{Time: d.at(win.last), Valid: true}
	negInf := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}

	var p plans
	var err error
	if p.FirstPage, err = explainOne(ctx, pool, gpu, start, end, negInf, 0, limit+1, nil); err != nil {
		return p, err
	}
	if d.windowRows(win) <= limit {
		return p, nil
	}
	// The cursor's id is a series id now: the last metric's of the GPU is
	// at most the dataset's series count.
	ts, _ := d.rowAt(win, limit-1)
	after := pgtype.Timestamptz{Time: ts, Valid: true}
	if p.SecondPage, err = explainOne(ctx, pool, gpu, start, end, after, int64(len(d.slots)), limit+1, nil); err != nil {
		return p, err
	}
	return p, nil
}

func explainOne(ctx context.Context, pool *pgxpool.Pool, args ...any) (string, error) {
	rows, err := pool.Query(ctx, sqlExplainPage, args...)
	if err != nil {
		return "", fmt.Errorf("explain page: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("explain page: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}
