// Package logx sets up logrus the same way for every step: stderr, text on a
// terminal, JSON when LOG_FORMAT=json, level from LOG_LEVEL, and a step field
// on every line.
package logx

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
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
	l.SetFormatter(newRedactor(l.Formatter, lookup))
	if level, ok := lookup("LOG_LEVEL"); ok && strings.TrimSpace(level) != "" {
		lv, err := logrus.ParseLevel(strings.TrimSpace(level))
		if err != nil {
			return nil, fmt.Errorf("LOG_LEVEL=%q: use one of trace, debug, info, warn, error", level)
		}
		l.SetLevel(lv)
	}
	return l, nil
}

var (
	stdOnce sync.Once
	std     *logrus.Logger
)

// Step returns the process logger with the step field set. The logger is
// built on first use from the environment; a bad setting is reported once and
// the defaults are used, so logging never stops a build.
func Step(name string) *logrus.Entry {
	stdOnce.Do(func() {
		l, err := New(os.Stderr, os.LookupEnv)
		if err != nil {
			l, _ = New(os.Stderr, func(k string) (string, bool) {
				if k == "LOG_FORMAT" || k == "LOG_LEVEL" {
					return "", false
				}
				return os.LookupEnv(k)
			})
			l.WithField("step", "log").Warn(err)
		}
		std = l
	})
	return std.WithField("step", name)
}

// credentialVars hold secrets the process may see: AWS keys and the tokens CI
// systems hand out. Their values never reach a log line.
var credentialVars = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
	"ACTIONS_ID_TOKEN_REQUEST_TOKEN", "GITHUB_TOKEN",
}

// tokenFiles hold secrets by path: the OIDC token a CI system hands the SDK
// for AssumeRoleWithWebIdentity.
var tokenFiles = []string{"AWS_WEB_IDENTITY_TOKEN_FILE"}

// jwt matches a JSON Web Token (OIDC identity tokens among them) whatever
// carried it into a line: header and payload are base64url JSON, so they
// start with "eyJ".
var jwt = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`)

// accessKeyID matches AWS access key ids (long-term AKIA, temporary ASIA, …)
// wherever they come from: an error message, a tool's output, a config dump.
var accessKeyID = regexp.MustCompile(`\b(AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[A-Z0-9]{16}\b`)

// privateKey matches a PEM private key (the certificate's, the ACME
// account's), in case a library's message or a dump ever carries one.
var privateKey = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)`)

// minSecretLen keeps short, ordinary values (a test's "x") from being taken
// for secrets and blanking unrelated text.
const minSecretLen = 8

// Redacted replaces a credential in a log line.
const Redacted = "[redacted]"

// redactor blanks credentials in every formatted line, whatever field,
// message or tool output carried them, at every level.
type redactor struct {
	next    logrus.Formatter
	secrets [][]byte
}

func newRedactor(next logrus.Formatter, lookup func(string) (string, bool)) *redactor {
	r := &redactor{next: next}
	for _, name := range credentialVars {
		if v, ok := lookup(name); ok && len(v) >= minSecretLen {
			r.secrets = append(r.secrets, []byte(v))
		}
	}
	for _, name := range tokenFiles {
		if path, ok := lookup(name); ok && path != "" {
			if token, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(token)) >= minSecretLen {
				r.secrets = append(r.secrets, bytes.TrimSpace(token))
			}
		}
	}
	return r
}

func (r *redactor) Format(e *logrus.Entry) ([]byte, error) {
	b, err := r.next.Format(e)
	for _, s := range r.secrets {
		b = bytes.ReplaceAll(b, s, []byte(Redacted))
	}
	b = jwt.ReplaceAll(b, []byte(Redacted))
	b = privateKey.ReplaceAll(b, []byte(Redacted))
	return accessKeyID.ReplaceAll(b, []byte(Redacted)), err
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
