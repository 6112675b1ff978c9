package logx

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sdkLogging matches what turns on the AWS SDK's own request logging, which
// writes request headers and signing details through the SDK's logger, not
// this package's redacting one.
var sdkLogging = regexp.MustCompile(`ClientLogMode|WithClientLogMode|LogSigning|LogRequestWithBody|LogResponseWithBody|LogRequest\b|LogResponse\b|WithLogger\(`)

// TestNothingEnablesSDKRequestLogging guards the pipeline's code: no file
// under magefiles turns on the SDK's request logging or hands the SDK a
// logger of its own, at any LOG_LEVEL. Were it ever wanted (LOG_LEVEL=trace),
// it must log through a logx logger so the redactor sees every line.
func TestNothingEnablesSDKRequestLogging(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), "_") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			code, _, _ := strings.Cut(line, "//")
			if sdkLogging.MatchString(code) {
				t.Errorf("%s:%d enables the AWS SDK's logging: %s", path, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
