package dativo

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
)

// SocketEnv names the environment variable that holds the Unix-socket path the host wants the plugin
// to listen on. A host that starts a plugin connects to that socket and nowhere else: a handshake that
// names any other location is refused.
const SocketEnv = "DATIVO_FLIGHT_SOCKET"

// How long a stopping plugin lets running calls finish before it cuts them.
const stopGrace = 2 * time.Second

// Serve runs plugin as a Dativo out-of-process plugin and exits the process when done.
//
// It listens on the Unix socket named by $DATIVO_FLIGHT_SOCKET when a host started it (a --listen
// flag is then ignored, with a warning), else on the address given with --listen (grpc://127.0.0.1:0,
// the default, or grpc+unix:///path, for manual runs), prints the handshake line on stdout, and serves until the host sends shutdown, stdin reaches EOF
// (when stdin is a pipe or a terminal), the parent process dies, or SIGTERM/SIGINT arrives. Then it
// calls Close and exits with status 0; a failure to listen exits with status 1. Other command-line
// arguments are left to the plugin.
func Serve(plugin Plugin) {
	os.Exit(run(plugin, os.Args[1:], os.Getenv(SocketEnv), os.Stdin, os.Stdout))
}

// Logf writes one line to stderr, which the host copies into the job's log (with secrets redacted).
func Logf(format string, args ...any) { logf(format, args...) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, strings.TrimRight(format, "\n")+"\n", args...)
}

// ListenFlag returns the value of --listen (or -listen) in args, or "".
func ListenFlag(args []string) string {
	for i, arg := range args {
		for _, name := range []string{"--listen", "-listen"} {
			if arg == name && i+1 < len(args) {
				return args[i+1]
			}
			if strings.HasPrefix(arg, name+"=") {
				return arg[len(name)+1:]
			}
		}
	}
	return ""
}

func run(plugin Plugin, args []string, socket string, stdin *os.File, stdout io.Writer) int {
	listener, location, cleanup, err := listenOn(plugin.Info().Name, ListenFlag(args), socket)
	if err != nil {
		logf("%s: %v", plugin.Info().Name, err)
		return 1
	}
	defer cleanup()

	stop := make(chan string, 4)
	var once sync.Once
	request := func(why string) {
		once.Do(func() { stop <- why })
	}
	server := flight.NewServerWithMiddleware(nil,
		// Batches can be large; gRPC's 4 MiB default would refuse them.
		grpc.MaxRecvMsgSize(math.MaxInt32), grpc.MaxSendMsgSize(math.MaxInt32))
	server.RegisterFlightService(newService(plugin, func() { request("shutdown") }))
	server.InitListener(listener)

	info := plugin.Info()
	line, _ := json.Marshal(map[string]any{
		"dativo_flight": ProtocolVersion, "location": location, "name": info.Name, "version": info.Version,
	})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		logf("%s: cannot print the handshake: %v", info.Name, err)
		return 1
	}

	served := make(chan error, 1)
	go func() { served <- server.Serve() }()
	watchStdin(stdin, request)
	watchParent(request)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)

	select {
	case <-stop:
	case sig := <-signals:
		logf("%s: %v received, stopping", info.Name, sig)
	case err := <-served:
		if err != nil {
			logf("%s: the Flight server stopped: %v", info.Name, err)
		}
	}
	stopServer(server)
	if err := plugin.Close(); err != nil {
		logf("%s: close: %v", info.Name, err)
	}
	return 0
}

// listenOn opens the plugin's listener and returns the location to announce: the host's socket, which
// --listen cannot move (the host connects nowhere else), else the --listen address, else any loopback
// port.
func listenOn(name, flag, socket string) (net.Listener, string, func(), error) {
	if socket == "" {
		if flag == "" {
			flag = "grpc://127.0.0.1:0"
		}
		listener, location, cleanup, err := listen(flag)
		if err != nil {
			err = fmt.Errorf("cannot listen on %s: %w", flag, err)
		}
		return listener, location, cleanup, err
	}
	if flag != "" && flag != "grpc+unix://"+socket {
		logf("WARNING %s: ignoring --listen %s: the host that started this plugin connects only to $%s",
			name, flag, SocketEnv)
	}
	listener, location, cleanup, err := listenUnix(socket)
	if err != nil {
		err = fmt.Errorf("cannot listen on $%s (%s): %w", SocketEnv, socket, err)
	}
	return listener, location, cleanup, err
}

// listen opens the listener for a grpc:// or grpc+unix:// address and returns the location to announce.
func listen(address string) (net.Listener, string, func(), error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, "", nil, err
	}
	switch u.Scheme {
	case "grpc+unix", "unix":
		path := u.Path
		if u.Host != "" { // grpc+unix://relative/path
			path = u.Host + u.Path
		}
		if path, err = filepath.Abs(path); err != nil {
			return nil, "", nil, err
		}
		return listenUnix(path)
	case "grpc", "grpc+tcp":
		lis, err := net.Listen("tcp", u.Host)
		if err != nil {
			return nil, "", nil, err
		}
		return lis, "grpc://" + lis.Addr().String(), func() {}, nil
	}
	return nil, "", nil, fmt.Errorf("unsupported scheme %q (use grpc://HOST:PORT or grpc+unix:///PATH)", u.Scheme)
}

// listenUnix listens on the Unix socket at path, announced as exactly grpc+unix://path (the host
// compares the string), and removes it at the end.
func listenUnix(path string) (net.Listener, string, func(), error) {
	if info, err := os.Lstat(path); err == nil && info.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path) // a socket left by a killed run
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, "", nil, err
	}
	return lis, "grpc+unix://" + path, func() { _ = os.Remove(path) }, nil
}

// stopServer lets running calls finish for a moment, then cuts them.
func stopServer(server flight.Server) {
	done := make(chan struct{})
	go func() {
		server.Shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopGrace):
		logf("stopping with calls still running")
	}
}

// watchStdin stops the plugin when stdin reaches EOF: the host holds the other end of a pipe, so EOF
// means it has gone. Stdin that is /dev/null or a regular file says nothing and is not watched.
func watchStdin(stdin *os.File, request func(string)) {
	if stdin == nil {
		return
	}
	info, err := stdin.Stat()
	if err != nil {
		return
	}
	mode := info.Mode()
	watch := mode&(os.ModeNamedPipe|os.ModeSocket) != 0
	if mode&os.ModeCharDevice != 0 {
		null, err := os.Stat(os.DevNull)
		watch = err == nil && !os.SameFile(info, null) // a terminal: Ctrl-D stops a manual run
	}
	if !watch {
		return
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		request("stdin closed")
	}()
}

// watchParent stops the plugin when its parent dies (it is then re-parented).
func watchParent(request func(string)) {
	parent := os.Getppid()
	if parent <= 1 {
		return
	}
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			if os.Getppid() != parent {
				request("parent exited")
				return
			}
		}
	}()
}
