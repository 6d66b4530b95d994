// Command worker-go is the Go worker of Swarm AI Lab: `worker-go` runs it (settings from the environment),
// `worker-go --check` reads the heartbeat of the worker running here (exit 0 or 1).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/swarm-ai-lab/worker-go/internal/callback"
	"github.com/swarm-ai-lab/worker-go/internal/health"
	"github.com/swarm-ai-lab/worker-go/internal/logx"
	"github.com/swarm-ai-lab/worker-go/internal/models"
	"github.com/swarm-ai-lab/worker-go/internal/settings"
	"github.com/swarm-ai-lab/worker-go/internal/worker"
)

// stopTimeout bounds the goodbye: the work loop's stop, then the offline status.
const stopTimeout = 2 * time.Second

func main() { os.Exit(run(os.Args[1:])) }

func badSetting(err error, code int) int {
	fmt.Fprintf(os.Stderr, "worker: bad setting: %v\n", err)
	return code
}

func run(args []string) int {
	flags := flag.NewFlagSet("worker-go", flag.ContinueOnError)
	check := flags.Bool("check", false, "check the worker running here: exit 0 if healthy, 1 if not")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: worker-go [--check]\n\nRun a Swarm AI Lab worker (settings from the environment).")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "worker-go: unexpected argument %q\n", flags.Arg(0))
		return 2
	}
	s, err := settings.FromEnv(settings.OSEnv())
	if err != nil {
		if *check {
			return badSetting(err, 1)
		}
		return badSetting(err, 2)
	}
	if *check {
		return health.RunCheck(s.HealthFile)
	}
	key, err := settings.LoadAPIKey(s.GeminiAPIKey, s.GeminiAPIKeyFile)
	if err != nil {
		return badSetting(err, 2)
	}
	sender, err := callback.NewSender(s.GRPCRetries, s.GRPCTLSCA, s.ResultStream)
	if err != nil {
		return badSetting(err, 2)
	}
	logx.Setup(os.Stdout, s.LogLevel, "worker-go")
	timeout := time.Duration(s.GeminiTimeoutSeconds * float64(time.Second))
	router := models.NewRouter(s.ModelMode,
		func() models.Model { return models.NewGemini(s.GeminiModel, s.GeminiBaseURL, timeout) },
		models.NewOffline(s.OfflineLatencyMS, s.OfflineLatencySDMS), key)
	runner, err := worker.New(s, router, sender)
	if err != nil {
		return badSetting(err, 2)
	}
	// Handlers before anything connects: a stop signal may come at once.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	runner.Start()
	heartbeat := health.NewHeartbeat(s.HealthFile, s.WorkerID, runner.Connected)
	heartbeat.Start()
	slog.Info(fmt.Sprintf("worker %s up (model mode %s, %s s of simulated work)", s.WorkerID, s.ModelMode, settings.FormatG(s.WorkSeconds)))
	<-stop
	heartbeat.Close()
	runner.Stop(stopTimeout)
	slog.Info("worker " + s.WorkerID + " stopped")
	return 0
}
