package mqhttp_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/ports"
)

func TestModule(t *testing.T) {
	t.Parallel()
	cfg := mqhttp.ClientConfig{WriterURL: "http://127.0.0.1:8081", ReaderURLs: []string{"http://127.0.0.1:8082"}}
	require.NoError(t, fx.ValidateApp(mqhttp.Module, fx.Supply(cfg),
		fx.Invoke(func(ports.Queue, ports.Publisher, ports.Consumer, *mqhttp.Client) {})))

	var client *mqhttp.Client
	var queue ports.Queue
	app := fxtest.New(t, mqhttp.Module, fx.Supply(cfg), fx.NopLogger, fx.Populate(&client, &queue))
	app.RequireStart()
	require.Same(t, client, queue.(*mqhttp.Client))
	app.RequireStop()
	_, err := client.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: []byte(`{}`)}})
	require.ErrorIs(t, err, ports.ErrClosed, "stop closed the client")
}
