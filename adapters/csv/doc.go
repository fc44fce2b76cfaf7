// Package csv is the CSV source adapter: it implements ports.Source over a
// DCGM exporter CSV dump, the streamer's default input.
//
// Columns are found by header name, case-insensitively and with aliases
// (gpu_id/gpu_index, uuid/gpu_uuid, modelName/model_name, labels_raw/labels),
// so column order, a UTF-8 byte order mark, CRLF line ends and extra columns
// do not matter. metric_name, gpu_id, uuid and value are required; a missing
// one fails the constructor with an error naming it. The other columns are
// optional and read as empty strings. The timestamp column is ignored: every
// point is stamped with the time Next hands it out.
//
// A row that cannot be used (wrong field count, malformed quoting, an
// unparsable gpu_id or value, an empty uuid or metric_name) is logged with
// its line number and reason, counted in streamer_csv_rows_skipped_total and
// in Skipped, and skipped; it never fails the source. An empty value, a DCGM
// blank sentinel, NaN and ±Inf become a nil Value (stored as NULL).
//
// The file is parsed once, into memory, when the Source is built. A DCGM dump
// is small (the shipped one is under 1 MiB for 2,470 rows) and looping over
// it forever is the streamer's job, so re-reading and re-parsing it on every
// pass would only burn CPU and re-log the same bad rows. To keep that memory
// bounded, inputs larger than MaxFileSize (256 MiB; Options.MaxBytes lowers
// it) are refused. Because parsing happens up front, bad rows are logged and
// counted once per load, not once per pass, and a looping source over a file
// with no valid row fails at construction instead of spinning.
//
// Next is safe for concurrent use: the rows are immutable after construction
// and the read position is a single atomic counter.
package csv
