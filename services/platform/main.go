// Command platform is the example stack's web app: it answers with the release and
// color it runs as, calls rag and crawler (by their plain names, which stay in its
// color), holds WebSockets on /ws and counts visits in db
// (PostgreSQL, reached with libpq's PGHOST, PGUSER, PGPASSWORD, PGDATABASE).
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
)

// build is set at link time (-X main.build=...) to tell builds apart; broken=true
// (or BROKEN=true in the environment) makes the health check fail, for testing
// a bad release; failAfter=N makes
// every answer a 500 once N pages were served, for testing a release that
// passes its checks and breaks under real traffic.
//
// note=true makes each visit also write the release into the column visits.note,
// which a migration adds: a release that needs a schema change.
//
// buildID makes a build unlike any earlier one with the same build (the tests
// set it per run, so a host never has their images from a run before).
var (
	build     = "1"
	buildID   = ""
	broken    = "false"
	failAfter = ""
	note      = "false"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		// taledeploy runs this in a one-off container of the new release.
		if err := migrate(context.Background(), env("MIGRATIONS_DIR", "/app/migrations"), os.Args[2:]); err != nil {
			log.Fatalf("migrate: %v", err)
		}
		return
	}
	release, color := os.Getenv("TALEDEPLOY_RELEASE"), os.Getenv("TALEDEPLOY_COLOR")
	ragURL := env("RAG_URL", "http://rag:8000")
	crawlerURL := env("CRAWLER_URL", "http://crawler:8002")
	marker := env("SHUTDOWN_MARKER", "/tmp/shutdown")
	client := &http.Client{Timeout: 5 * time.Second}
	db, err := openCounter()
	if err != nil {
		log.Fatalf("db: %v", err)
	}
	// The table is made in the background: the app starts without the database
	// and reports ready once the table exists.
	go db.prepare(context.Background())

	limit, _ := strconv.Atoi(failAfter)
	var served atomic.Int64
	failing := func() bool { return limit > 0 && served.Load() >= int64(limit) }

	mux := http.NewServeMux()
	stamp := func(w http.ResponseWriter) {
		w.Header().Set("X-Release", release)
		w.Header().Set("X-Color", color)
		w.Header().Set("X-Build", build)
		if buildID != "" {
			w.Header().Set("X-Build-ID", buildID)
		}
	}
	mux.HandleFunc("/api/health", func(w http.ResponseWriter, r *http.Request) {
		stamp(w)
		if _, err := os.Stat(marker); err == nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if broken == "true" || os.Getenv("BROKEN") == "true" || failing() {
			http.Error(w, "this build is broken on purpose", http.StatusInternalServerError)
			return
		}
		// Only the first start waits for the database; later it is not asked, so a
		// database restart never takes every color out of the proxy at once.
		if !db.ready() {
			http.Error(w, "waiting for the database", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		stamp(w)
		fmt.Fprintf(w, "slept %d ms on %s\n", ms, color)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		stamp(w)
		if served.Add(1); failing() {
			http.Error(w, "this build breaks under traffic on purpose", http.StatusInternalServerError)
			return
		}
		ragColor, err := call(r.Context(), client, ragURL+"/whoami", "X-Color")
		if err != nil {
			http.Error(w, "rag: "+err.Error(), http.StatusBadGateway)
			return
		}
		crawlerColor, err := call(r.Context(), client, crawlerURL+"/whoami", "X-Color")
		if err != nil {
			http.Error(w, "crawler: "+err.Error(), http.StatusBadGateway)
			return
		}
		visits, err := db.incr(r.Context())
		if err != nil {
			http.Error(w, "db: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Rag-Color", ragColor)
		w.Header().Set("X-Crawler-Color", crawlerColor)
		w.Header().Set("X-Visits", strconv.FormatInt(visits, 10))
		fmt.Fprintf(w, "Tale platform, build %s, release %s on %s (rag: %s, crawler: %s). Visits: %d\n", build, release, color, ragColor, crawlerColor, visits)
	})

	ws := &sockets{conns: map[*websocket.Conn]bool{}}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { ws.serve(w, r, color, release) })

	srv := &http.Server{Addr: ":" + env("PORT", "8080"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	go func() {
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	log.Printf("platform build %s release %s color %s listening on %s", build, release, color, srv.Addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	// In-flight requests finish; the entrypoint has already made health answer 503.
	log.Printf("draining")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Shutdown does not wait for hijacked connections: WebSockets are told the
	// server is going away (1001), so clients reconnect, to the other color.
	closed := make(chan struct{})
	go func() { ws.closeAll(); close(closed) }()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
	<-closed
	db.pool.Close()
	log.Printf("stopped")
}

// sockets are the open WebSocket connections: each gets a hello naming the
// color, then every message it sends comes back prefixed with the color.
type sockets struct {
	mu     sync.Mutex
	conns  map[*websocket.Conn]bool
	closed bool
}

func (s *sockets) serve(w http.ResponseWriter, r *http.Request, color, release string) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close(websocket.StatusGoingAway, "shutting down")
		return
	}
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	ctx := r.Context()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello "+color+" "+release)); err != nil {
		return
	}
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, append([]byte(color+": "), msg...)); err != nil {
			return
		}
	}
}

func (s *sockets) closeAll() {
	s.mu.Lock()
	s.closed = true
	var conns []*websocket.Conn
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	log.Printf("closing %d websockets", len(conns))
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.Close(websocket.StatusGoingAway, "shutting down") })
	}
	wg.Wait()
}

// counter keeps the visit count in the table visits, one row.
type counter struct {
	pool     *pgxpool.Pool
	mu       sync.Mutex // one prepare at a time
	prepared atomic.Bool
}

// schema makes the table when it is missing; a migration will own this later.
const schema = `CREATE TABLE IF NOT EXISTS visits (id int PRIMARY KEY, count bigint NOT NULL DEFAULT 0);
INSERT INTO visits (id) VALUES (1) ON CONFLICT (id) DO NOTHING`

func openCounter() (*counter, error) {
	// An empty connection string: pgx reads PGHOST, PGUSER, PGPASSWORD, PGDATABASE.
	cfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Two colors run at once during a push: stay well under max_connections (100).
	cfg.MaxConns = 8
	// Every request updates the one row, so a commit that waits on a slow
	// fsync (a shared CI disk, a VPS with noisy neighbours) holds the row's
	// lock and the requests queued behind it time out together. A visit
	// count need not wait for the disk: commits are visible at once and
	// written a fraction of a second later.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &counter{pool: pool}, nil
}

func (c *counter) ready() bool { return c.prepared.Load() }

// prepare makes the table, retrying until the database answers.
func (c *counter) prepare(ctx context.Context) {
	for {
		err := c.ensure(ctx)
		if err == nil {
			log.Printf("db: ready")
			return
		}
		log.Printf("db: %v (retrying)", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *counter) ensure(ctx context.Context) error {
	if c.prepared.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prepared.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.pool.Exec(ctx, schema); err != nil {
		return err
	}
	c.prepared.Store(true)
	return nil
}

// incr counts one visit and returns the new count.
func (c *counter) incr(ctx context.Context) (int64, error) {
	if err := c.ensure(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int64
	if note == "true" {
		err := c.pool.QueryRow(ctx, "UPDATE visits SET count = count + 1, note = $1 WHERE id = 1 RETURNING count", os.Getenv("TALEDEPLOY_RELEASE")).Scan(&n)
		return n, err
	}
	err := c.pool.QueryRow(ctx, "UPDATE visits SET count = count + 1 WHERE id = 1 RETURNING count").Scan(&n)
	return n, err
}

func call(ctx context.Context, c *http.Client, url, header string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return resp.Header.Get(header), nil
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
