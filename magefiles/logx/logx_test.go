package logx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func lookup(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func TestJSONLinesCarryTheStep(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, lookup(map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug"}))
	if err != nil {
		t.Fatal(err)
	}
	l.WithField("step", "bake").Debug("uploading")
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil {
		t.Fatalf("not JSON: %q: %v", b.String(), err)
	}
	if line["step"] != "bake" || line["msg"] != "uploading" || line["level"] != "debug" {
		t.Errorf("line = %v", line)
	}
}

func TestLevelFiltersAndTextIsDefault(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, lookup(map[string]string{"LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.WithField("step", "site").Warn("shown")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), "step=site") {
		t.Errorf("output = %q", b.String())
	}
}

func TestBadSettingsNameTheFix(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, lookup(map[string]string{"LOG_FORMAT": "xml"})); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("LOG_FORMAT=xml: %v", err)
	}
	if _, err := New(&bytes.Buffer{}, lookup(map[string]string{"LOG_LEVEL": "loud"})); err == nil || !strings.Contains(err.Error(), "use one of") {
		t.Errorf("LOG_LEVEL=loud: %v", err)
	}
}

func TestWriterLogsEachLine(t *testing.T) {
	var b bytes.Buffer
	l, _ := New(&b, lookup(map[string]string{"LOG_FORMAT": "json"}))
	w := Writer(l.WithField("step", "site"), "jekyll")
	w.Write([]byte("Configuration file: _config.yml\n   done in 0.1 seconds.\n"))
	w.Close()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"tool":"jekyll"`) || !strings.Contains(lines[1], `"step":"site"`) {
		t.Errorf("lines = %q", lines)
	}
}
