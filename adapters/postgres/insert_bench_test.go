package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// The alternative insert way BenchmarkWriteBatch compares WriteBatch with:
// COPY into a transaction-scoped staging table, then INSERT … SELECT … ON
// CONFLICT DO NOTHING. It lost (see BenchmarkWriteBatch), so it lives here.
const (
	// sqlCreateStage makes a per-transaction staging table (no index).
	sqlCreateStage = `CREATE TEMP TABLE telemetry_stage (
    uuid uuid, gpu_uuid text, gpu_index int4, device text, hostname text, model_name text, metric_name text,
    "timestamp" timestamptz, container text, pod text, namespace text, value float8, labels_raw text
) ON COMMIT DROP`
	// sqlInsertFromStage moves staged rows, probing telemetry_uuid_key.
	sqlInsertFromStage = `INSERT INTO telemetry
    (uuid, gpu_uuid, gpu_index, device, hostname, model_name, metric_name, "timestamp",
     container, pod, namespace, value, labels_raw)
SELECT * FROM telemetry_stage ORDER BY uuid
ON CONFLICT (uuid) DO NOTHING`
)

var stageColumns = []string{"uuid", "gpu_uuid", "gpu_index", "device", "hostname", "model_name", "metric_name",
	"timestamp", "container", "pod", "namespace", "value", "labels_raw"}

func (s *TelemetryStore) writeBatchCopy(ctx context.Context, records []domain.Record) (ports.WriteResult, error) {
	var inserted int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlCreateStage); err != nil {
			return err
		}
		rows := make([][]any, len(records))
		for i, r := range records {
			rows[i] = []any{r.MsgUUID, r.GPUUUID, int32(r.GPUIndex), r.Device, r.Hostname, r.ModelName, r.MetricName,
				r.Timestamp, r.Container, r.Pod, r.Namespace, r.Value, r.LabelsRaw}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"telemetry_stage"}, stageColumns, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sqlInsertFromStage)
		if err != nil {
			return err
		}
		inserted = int(tag.RowsAffected())
		_, err = tx.Exec(ctx, sqlUpsertGPUs, gpuColumns(records)...)
		return err
	})
	if err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch (copy): %w", translate(err))
	}
	return ports.WriteResult{Inserted: inserted, Duplicates: len(records) - inserted}, nil
}

// writeBatchUnnestTx is WriteBatch's statements in an explicit transaction
// (BEGIN and COMMIT cost two more round trips than the implicit one).
func (s *TelemetryStore) writeBatchUnnestTx(ctx context.Context, records []domain.Record) (ports.WriteResult, error) {
	var inserted int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sqlInsertTelemetry, telemetryColumns(records)...)
		if err != nil {
			return err
		}
		inserted = int(tag.RowsAffected())
		_, err = tx.Exec(ctx, sqlUpsertGPUs, gpuColumns(records)...)
		return err
	})
	if err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch (unnest tx): %w", translate(err))
	}
	return ports.WriteResult{Inserted: inserted, Duplicates: len(records) - inserted}, nil
}

// BenchmarkWriteBatch compares the insert ways on batches of 500 records of
// 50 GPUs, with 10% of each batch already stored (redeliveries).
func BenchmarkWriteBatch(b *testing.B) {
	ways := []struct {
		name  string
		write func(s *TelemetryStore) func(context.Context, []domain.Record) (ports.WriteResult, error)
	}{
		{"unnest-batch", func(s *TelemetryStore) func(context.Context, []domain.Record) (ports.WriteResult, error) {
			return s.WriteBatch
		}},
		{"unnest-tx", func(s *TelemetryStore) func(context.Context, []domain.Record) (ports.WriteResult, error) {
			return s.writeBatchUnnestTx
		}},
		{"copy-stage", func(s *TelemetryStore) func(context.Context, []domain.Record) (ports.WriteResult, error) {
			return s.writeBatchCopy
		}},
	}
	for _, way := range ways {
		b.Run(way.name, func(b *testing.B) {
			s := NewTelemetryStore(pgtest.NewPool(b), nil)
			write := way.write(s)
			ctx := context.Background()
			ts := time.Date(2025, 7, 18, 0, 0, 0, 0, time.UTC)
			var prev []domain.Record
			for b.Loop() {
				b.StopTimer()
				batch := make([]domain.Record, 500)
				for i := range batch {
					if prev != nil && i%10 == 0 {
						batch[i] = prev[i]
						continue
					}
					ts = ts.Add(time.Millisecond)
					batch[i] = domain.Record{MsgUUID: uuid.New(), Point: domain.Point{
						Timestamp: ts, MetricName: "DCGM_FI_DEV_GPU_UTIL", GPUUUID: fmt.Sprintf("GPU-%02d", i%50),
						GPUIndex: i % 8, Device: fmt.Sprintf("nvidia%d", i%8), Hostname: fmt.Sprintf("host-%d", i%7),
						ModelName: "NVIDIA H100 80GB HBM3", Value: &[]float64{float64(i)}[0],
						LabelsRaw: `DCGM_FI_DRIVER_VERSION="535.129.03"`,
					}}
				}
				// Every tenth record repeats one of the previous batch.
				want := ports.WriteResult{Inserted: 500}
				if prev != nil {
					want = ports.WriteResult{Inserted: 450, Duplicates: 50}
				}
				prev = batch
				b.StartTimer()
				res, err := write(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if res != want {
					b.Fatalf("write batch: %+v, want %+v", res, want)
				}
			}
			b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
