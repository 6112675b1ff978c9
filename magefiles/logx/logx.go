// Package logx sets up logrus the same way for every step: stderr, text on a
// terminal, JSON when LOG_FORMAT=json, level from LOG_LEVEL, and a step field
// on every line.
package logx

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// New builds a logger from LOG_FORMAT and LOG_LEVEL, writing to w.
func New(w io.Writer, lookup func(string) (string, bool)) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(w)
	format, _ := lookup("LOG_FORMAT")
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("LOG_FORMAT=%q: use text or json", format)
	}
	if level, ok := lookup("LOG_LEVEL"); ok && strings.TrimSpace(level) != "" {
		lv, err := logrus.ParseLevel(strings.TrimSpace(level))
		if err != nil {
			return nil, fmt.Errorf("LOG_LEVEL=%q: use one of trace, debug, info, warn, error", level)
		}
		l.SetLevel(lv)
	}
	return l, nil
}

var std *logrus.Logger

// Step returns the process logger with the step field set. The logger is
// built on first use from the environment; a bad setting is reported once and
// the defaults are used, so logging never stops a build.
func Step(name string) *logrus.Entry {
	if std == nil {
		l, err := New(os.Stderr, os.LookupEnv)
		if err != nil {
			l, _ = New(os.Stderr, func(string) (string, bool) { return "", false })
			l.WithField("step", "log").Warn(err)
		}
		std = l
	}
	return std.WithField("step", name)
}

// Writer returns a writer that logs each line it is given at info level, for
// streaming a tool's output (jekyll, mirage, make) through the logger. Lines
// are logged as they complete, in the caller's goroutine, so nothing is lost
// or reordered when the tool exits; Close logs an unterminated last line.
// logrus's own WriterLevel logs from a goroutine and can drop the last lines.
func Writer(e *logrus.Entry, tool string) io.WriteCloser {
	return &lineWriter{log: e.WithField("tool", tool)}
}

// maxLine bounds a buffered line so a tool printing without newlines cannot
// grow memory without limit.
const maxLine = 64 << 10

type lineWriter struct {
	mu   sync.Mutex
	log  *logrus.Entry
	part []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.part = append(w.part, p...)
			if len(w.part) >= maxLine {
				w.flush()
			}
			break
		}
		w.part = append(w.part, p[:i]...)
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	line := strings.TrimRight(string(w.part), "\r ")
	w.part = w.part[:0]
	if line != "" {
		w.log.Info(line)
	}
}

func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flush()
	return nil
}
