package logx

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
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

func TestCredentialsNeverReachALogLine(t *testing.T) {
	const (
		keyID   = "AKIAIOSFODNN7EXAMPLE"
		secret  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
		session = "FwoGZXIvYXdzEBYaDH+session+token+value"
		tempKey = "ASIAZZZZZZZZZZZZZZZZ"
	)
	for _, format := range []string{"text", "json"} {
		var b bytes.Buffer
		l, err := New(&b, lookup(map[string]string{
			"LOG_FORMAT": format, "LOG_LEVEL": "trace",
			"AWS_ACCESS_KEY_ID": keyID, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": session,
		}))
		if err != nil {
			t.Fatal(err)
		}
		e := l.WithField("step", "bake")
		e.WithField("auth", "Credential="+keyID+"/20261125/us-east-1/ebs").Trace("signing")
		e.Debugf("env dump: secret=%s token=%s", secret, session)
		e.WithError(errors.New("assumed role gave " + tempKey)).Error("failed")
		w := Writer(e, "aws")
		w.Write([]byte("aws_secret_access_key = " + secret + "\n"))
		w.Close()
		out := b.String()
		for _, s := range []string{keyID, secret, session, tempKey} {
			if strings.Contains(out, s) {
				t.Errorf("%s: credential %q leaked:\n%s", format, s, out)
			}
		}
		if n := strings.Count(out, Redacted); n < 5 {
			t.Errorf("%s: %d redactions, want at least 5:\n%s", format, n, out)
		}
	}
}

func TestOIDCTokensNeverReachALogLine(t *testing.T) {
	// A web identity token as GitHub Actions hands it to the SDK, by file.
	const token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJyZXBvOm93bmVyL3JlcG86cmVmOnJlZnMvaGVhZHMvbWFpbiJ9.c2lnbmF0dXJlLWJ5dGVz"
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	l, err := New(&b, lookup(map[string]string{"LOG_LEVEL": "debug", "AWS_WEB_IDENTITY_TOKEN_FILE": file}))
	if err != nil {
		t.Fatal(err)
	}
	l.WithField("step", "deploy").Debugf("assuming role with %s", token)
	// A token that did not come from the file is still recognised by shape.
	other := "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.b3RoZXI"
	l.WithField("step", "deploy").Debug("header Authorization: Bearer " + other)
	if strings.Contains(b.String(), token) || strings.Contains(b.String(), other) || strings.Count(b.String(), Redacted) != 2 {
		t.Errorf("token leaked:\n%s", b.String())
	}
}
