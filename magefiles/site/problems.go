package site

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
)

// Jekyll logs each message as a topic right-aligned in 20 columns and the
// text; continuation lines have an empty topic. Its errors reach the log only
// as such lines (a YAML exception in a front matter is logged and the build
// exits 0), so the Site step reads them.
var (
	ansi      = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	topicLine = regexp.MustCompile(`^\s*([A-Z][A-Za-z -]*?):\s+(.*)$`)
)

// fatalTopics are the messages that fail the Site step: errors, and the
// warnings about front matter and Liquid (Jekyll's topics, from its source).
var fatalTopics = map[string]bool{
	"Error": true, "ERROR": true, "Fatal": true, "Liquid Exception": true, "Liquid Warning": true,
	"Build Warning": true, "Conflict": true, "Dependency Error": true, "Conversion error": true, "Theme error": true,
}

// warnTopics are logged at warn level and do not fail the build.
var warnTopics = map[string]bool{
	"Warning": true, "WARNING": true, "Deprecation": true, "Kramdown warning": true, "Defaults": true, "Skipping": true,
}

// Problem is one fatal message of jekyll's, its file made relative to the
// blog and, where jekyll gives one, its line in that file.
type Problem struct {
	File    string
	Line    int
	Message string
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	case p.File != "":
		return p.File + ": " + p.Message
	}
	return p.Message
}

// outputReader receives jekyll's output line by line: it logs each line (at
// warn or error level for problems) and keeps the fatal ones.
type outputReader struct {
	log    *logrus.Entry
	source string // the --source jekyll read, to make its paths relative
	shown  string // the directory the author knows: the blog's root

	mu      sync.Mutex
	part    []byte
	fatal   []string // topic + message, continuation lines appended
	inFatal bool
}

func (r *outputReader) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.part = append(r.part, p...)
			return n, nil
		}
		r.line(string(append(r.part, p[:i]...)))
		r.part = r.part[:0]
		p = p[i+1:]
	}
}

// Close handles a last line without a newline.
func (r *outputReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.part) > 0 {
		r.line(string(r.part))
		r.part = nil
	}
	return nil
}

func (r *outputReader) line(raw string) {
	line := strings.TrimRight(ansi.ReplaceAllString(raw, ""), "\r ")
	if strings.TrimSpace(line) == "" {
		return
	}
	log := r.log.WithField("tool", "jekyll")
	// Ruby's backtrace lines, after a fatal error, add nothing for the author.
	if strings.HasPrefix(strings.TrimSpace(line), "from /") {
		log.Debug(line)
		return
	}
	topic, text := "", strings.TrimSpace(line)
	if m := topicLine.FindStringSubmatch(line); m != nil && len(m[1]) <= 20 {
		topic, text = m[1], m[2]
	}
	switch {
	case fatalTopics[topic]:
		r.inFatal = true
		r.fatal = append(r.fatal, topic+": "+text)
		log.Error(strings.TrimSpace(line))
	case topic == "" && r.inFatal && !strings.HasPrefix(text, "done in ") && !strings.HasPrefix(text, "---") && !strings.HasPrefix(text, "Jekyll ") && !strings.HasPrefix(text, "for any additional"):
		r.fatal[len(r.fatal)-1] += " " + text
		log.Error(strings.TrimSpace(line))
	case warnTopics[topic]:
		r.inFatal = false
		log.Warn(strings.TrimSpace(line))
	default:
		r.inFatal = false
		log.Info(strings.TrimSpace(line))
	}
}

// Problems turns the fatal messages into problems with files and lines.
func (r *outputReader) Problems() []Problem {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Problem
	for _, f := range r.fatal {
		out = append(out, r.parse(f))
	}
	return out
}

var (
	// Error: YAML Exception reading /src/_posts/x.md: (<unknown>): did not find expected key while parsing a block mapping at line 2 column 1
	yamlProblem = regexp.MustCompile(`^Error: YAML Exception reading (.+?): (?:\(<unknown>\): )?(.*?) at line (\d+) column (\d+)`)
	// Liquid Exception: Liquid syntax error (line 4): Unknown tag 'x' in _posts/x.md
	liquidProblem = regexp.MustCompile(`^Liquid (?:Exception|Warning): (Liquid (?:syntax )?error) \(line (\d+)\): (.*) in (\S+)$`)
	// Build Warning: Layout 'nolayout' requested in index.md does not exist.
	layoutProblem = regexp.MustCompile(`^Build Warning: (Layout '.*' requested) in (\S+) (does not exist\.)$`)
)

func (r *outputReader) parse(msg string) Problem {
	if m := yamlProblem.FindStringSubmatch(msg); m != nil {
		// Jekyll parses the front matter with its opening --- line, so
		// the YAML parser's line is the file's line.
		line, _ := strconv.Atoi(m[3])
		return Problem{File: r.rel(m[1]), Line: line, Message: fmt.Sprintf("front matter is not valid YAML: %s (column %s)", m[2], m[4])}
	}
	if m := liquidProblem.FindStringSubmatch(msg); m != nil {
		// Liquid counts lines from the end of the front matter.
		line, _ := strconv.Atoi(m[2])
		file := r.rel(m[4])
		return Problem{File: file, Line: line + r.frontMatterLines(m[4]), Message: m[1] + ": " + m[3]}
	}
	if m := layoutProblem.FindStringSubmatch(msg); m != nil {
		return Problem{File: r.rel(m[2]), Message: m[1] + " " + m[3]}
	}
	return Problem{Message: r.replacePaths(msg)}
}

// rel shows a path jekyll printed as the author knows it: relative to the
// blog, or as printed when it lies elsewhere (a theme's gem).
func (r *outputReader) rel(p string) string {
	if !filepath.IsAbs(p) {
		return filepath.ToSlash(p)
	}
	for _, dir := range []string{r.source, r.shown} {
		if rel, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return p
}

func (r *outputReader) replacePaths(msg string) string {
	if r.source != "" {
		msg = strings.ReplaceAll(msg, r.source+string(filepath.Separator), "")
	}
	return msg
}

// frontMatterLines counts the lines before the content Liquid renders: the
// front matter with both --- lines, and the blank lines after it, which
// Jekyll's front matter pattern (---\s*$\n?) also takes; 0 when the file has
// no front matter or cannot be read.
func (r *outputReader) frontMatterLines(p string) int {
	if !filepath.IsAbs(p) {
		p = filepath.Join(r.source, p)
	}
	f, err := os.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	closed := 0
	for n := 1; s.Scan(); n++ {
		line := strings.TrimRight(s.Text(), " \t\r")
		switch {
		case n == 1 && line != "---":
			return 0
		case closed > 0 && line != "":
			return closed
		case closed > 0:
			closed = n
		case n > 1 && (line == "---" || line == "..."):
			closed = n
		}
	}
	return closed
}
