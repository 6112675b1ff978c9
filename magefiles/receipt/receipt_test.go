package receipt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "_build")
	type r struct{ A string }
	var got r
	if ok, err := Read(dir, "x", &got); ok || err != nil {
		t.Fatalf("missing receipt: ok=%v err=%v", ok, err)
	}
	if err := Write(dir, "x", r{A: "b"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := Read(dir, "x", &got); !ok || err != nil || got.A != "b" {
		t.Fatalf("read back %+v ok=%v err=%v", got, ok, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	os.WriteFile(Path(dir, "x"), []byte("{"), 0o644)
	if _, err := Read(dir, "x", &got); err == nil || !strings.Contains(err.Error(), "delete it and run again") {
		t.Errorf("damaged receipt: %v", err)
	}
}

func TestTreeHashesNamesAndContent(t *testing.T) {
	sum := func(files map[string]string) string {
		var tr Tree
		for k, v := range files {
			tr.Add(k, []byte(v))
		}
		return tr.Sum()
	}
	base := sum(map[string]string{"a": "1", "b/c": "2"})
	if base != sum(map[string]string{"b/c": "2", "a": "1"}) {
		t.Error("order of adding changed the hash")
	}
	for name, files := range map[string]map[string]string{
		"edit":   {"a": "1", "b/c": "3"},
		"rename": {"a": "1", "b/d": "2"},
		"add":    {"a": "1", "b/c": "2", "e": ""},
		"remove": {"a": "1"},
		"shift":  {"a1": "", "b/c": "2"}, // name/content boundary
	} {
		if sum(files) == base {
			t.Errorf("%s did not change the hash", name)
		}
	}
}
