// Package receipt reads and writes the JSON receipts each step leaves under
// _build/: what it was given (input hashes) and what it made (output paths).
// Receipts are caches: deleting them only makes the next run redo work.
package receipt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Path is where the receipt called name lives under buildDir.
func Path(buildDir, name string) string { return filepath.Join(buildDir, name+".json") }

// Write stores v as buildDir/name.json, atomically: readers see the old
// receipt or the new one, never half of one.
func Write(buildDir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("receipt %s: encoding: %w", name, err)
	}
	return WriteFileAtomic(Path(buildDir, name), append(data, '\n'), 0o644)
}

// Read loads buildDir/name.json into v. It reports false, and no error, when
// there is no receipt yet.
func Read(buildDir, name string, v any) (bool, error) {
	data, err := os.ReadFile(Path(buildDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("receipt %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("receipt %s: %s is damaged (%v); delete it and run again", name, Path(buildDir, name), err)
	}
	return true, nil
}

// WriteFileAtomic writes data to a temporary file beside path and renames it
// into place.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// HashFile returns the hex SHA-256 of a file's content.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Tree hashes a set of files by relative path and content, so the hash changes
// when a file is added, removed, renamed or edited, and not when only mtimes do.
type Tree struct {
	files map[string][]byte // relative slash path → content hash
}

// Add records a file's content under its relative path.
func (t *Tree) Add(rel string, content []byte) {
	if t.files == nil {
		t.files = map[string][]byte{}
	}
	sum := sha256.Sum256(content)
	t.files[filepath.ToSlash(rel)] = sum[:]
}

// AddFile records the file at abs under rel.
func (t *Tree) AddFile(rel, abs string) error {
	data, err := os.ReadFile(abs)
	if err != nil {
		return err
	}
	t.Add(rel, data)
	return nil
}

// Len is the number of files recorded.
func (t *Tree) Len() int { return len(t.files) }

// Sum is the hex SHA-256 over the sorted (path, content hash) pairs.
func (t *Tree) Sum() string {
	names := make([]string, 0, len(t.files))
	for n := range t.files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s", len(n), n)
		h.Write(t.files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Load reads the receipt a step left in buildDir. When the step has not run,
// the error says so and how to run it: "<step>: <what> yet (<path> is
// missing); <fix>".
func Load[T any](buildDir, name, step, what, fix string) (*T, error) {
	var v T
	ok, err := Read(buildDir, name, &v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: %s yet (%s is missing); %s", step, what, Path(buildDir, name), fix)
	}
	return &v, nil
}

// CopyFile copies src to dst, making dst's directory if needed.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
