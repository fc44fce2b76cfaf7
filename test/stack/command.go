package stack

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main runs a command of the benchmark suites and exits: parse reads its
// arguments into a configuration (-h ends it quietly, any other error exits
// 2), run does the work under a context that SIGINT and SIGTERM cancel (an
// error exits 1). Errors go to stderr after the command's name.
func Main[C any](name string, parse func(args []string) (C, error), run func(context.Context, C, io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := command(ctx, name, os.Args[1:], os.Stdout, os.Stderr, parse, run)
	stop()
	os.Exit(code)
}

// command is Main without the process: it returns the exit code.
func command[C any](ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	parse func([]string) (C, error), run func(context.Context, C, io.Writer) error) int {
	cfg, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if err := run(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
