package image

// Benchmarks: writing a 1 GiB uefi image holding a 20 MiB kernel, natively
// (go-diskfs) and the shell route (truncate, sfdisk, mkfs.fat, mmd, mcopy)
// making the same GPT, ESP and files; the native write followed by the
// image's digest (what the step computes now) and by the full SHA-256 (what
// it computed before); and the whole step. Measured in the same run:
//
//	go test -run '^$' -bench 'Image' -benchtime 5x ./magefiles/image/
//
// Besides time, B/op and allocs/op (Go heap only; the shell route's tools are
// other processes), each reports memory:
//
//   - peak-heap-MiB: the most Go heap in use during the runs, sampled every
//     200µs from runtime/metrics (/memory/classes/heap/objects:bytes).
//   - peak-rss-MiB: for the Go route, this process's VmHWM (peak resident
//     set) after resetting it through /proc/self/clear_refs before the runs,
//     so it includes the test binary and Go runtime; for the shell route, the
//     largest peak RSS of any tool it ran, as GNU time (%M) reports it.
//
// The GRUB EFI binary comes from the cache in both, as in a repeated build, so
// only laying out the disk is compared.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/image/layout"
	"github.com/unikernel-blog/blog/magefiles/image/layout/uefi"
	"github.com/unikernel-blog/blog/magefiles/internal/sparse"
	"github.com/unikernel-blog/blog/magefiles/internal/testsupport/testtool"
)

const benchSize = 1 << 30

// benchSetup makes the 20 MiB kernel and warms the GRUB cache; it returns the
// kernel, the build directory and the cached EFI binary.
func benchSetup(b *testing.B) (layout.Kernel, string, string) {
	b.Helper()
	needGRUB(b)
	dir := b.TempDir()
	path := randomKernel(b, 20*mib)
	k, _, err := findKernel(dir, path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Build(context.Background(), Options{BuildDir: dir, Layout: uefi.Name, Size: 64 * mib, Kernel: path}); err != nil {
		b.Fatal(err)
	}
	efi, _ := filepath.Glob(filepath.Join(dir, "cache", "grub-*.efi"))
	if len(efi) != 1 {
		b.Fatalf("GRUB cache holds %v; want one binary", efi)
	}
	return k, dir, efi[0]
}

func BenchmarkImageGo(b *testing.B) {
	k, dir, _ := benchSetup(b)
	lay, err := uefi.New(layout.Env{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		b.Fatal(err)
	}
	p, err := lay.Prepare(context.Background(), k)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "disk.img")
	resetPeakRSS(b)
	stop := sampleHeap()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := write(context.Background(), out, lay.Name(), p.Write, benchSize, "bench", 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(stop())/mib, "peak-heap-MiB")
	b.ReportMetric(float64(peakRSS(b))/mib, "peak-rss-MiB")
}

// BenchmarkImageGoWithDigest is writing the image and computing its digest,
// as the Image step does (sparse.DigestFile reads only the data blocks).
// Each run times both parts; digest-ms is the digest alone and x-write the
// pair over the write alone, from the same runs.
func BenchmarkImageGoWithDigest(b *testing.B) {
	benchWriteThen(b, "digest-ms", func(f *os.File) (string, error) {
		d, err := sparse.DigestFile(f, benchSize)
		return d.Hex, err
	})
}

// BenchmarkImageGoWithSHA256 is the same with what the step computed
// before the digest: the SHA-256 of all 1 GiB, holes hashed as zeros
// without being read (fullSHA256).
func BenchmarkImageGoWithSHA256(b *testing.B) {
	benchWriteThen(b, "sha256-ms", fullSHA256)
}

// benchWriteThen writes the image and then identifies it with id, timing
// each part.
func benchWriteThen(b *testing.B, metric string, id func(*os.File) (string, error)) {
	k, dir, _ := benchSetup(b)
	lay, err := uefi.New(layout.Env{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		b.Fatal(err)
	}
	p, err := lay.Prepare(context.Background(), k)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "disk.img")
	var writing, identifying time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := write(context.Background(), out, lay.Name(), p.Write, benchSize, "bench", 0o644); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		f, err := os.Open(out)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := id(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		writing += t1.Sub(t0)
		identifying += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(writing.Milliseconds())/float64(b.N), "write-ms")
	b.ReportMetric(float64(identifying.Milliseconds())/float64(b.N), metric)
	b.ReportMetric(float64(writing+identifying)/float64(writing), "x-write")
}

// fullSHA256 is the Image step's hash before the digest: SHA-256 over every
// byte of the image, the holes' zeros hashed (not read).
func fullSHA256(f *os.File) (string, error) {
	extents, _, err := sparse.DataExtents(f, benchSize)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	zeros := make([]byte, 1<<20)
	hashZeros := func(n int64) {
		for ; n > 0; n -= int64(len(zeros)) {
			h.Write(zeros[:min(n, int64(len(zeros)))])
		}
	}
	pos := int64(0)
	for _, e := range extents {
		hashZeros(e.Off - pos)
		if _, err := io.Copy(h, io.NewSectionReader(f, e.Off, e.Len)); err != nil {
			return "", err
		}
		pos = e.End()
	}
	hashZeros(benchSize - pos)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BenchmarkImageStep is the whole step as `mage image -f` runs it: the
// kernel hashed, the layout prepared, the image written, its digest, the
// receipt.
func BenchmarkImageStep(b *testing.B) {
	k, dir, _ := benchSetup(b)
	resetPeakRSS(b)
	stop := sampleHeap()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Build(context.Background(), Options{BuildDir: dir, Layout: uefi.Name, Size: benchSize, Kernel: k.Path, Force: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(stop())/mib, "peak-heap-MiB")
	b.ReportMetric(float64(peakRSS(b))/mib, "peak-rss-MiB")
}

func BenchmarkImageShell(b *testing.B) {
	k, _, efi := benchSetup(b)
	sfdisk := testtool.Need(b, "sfdisk", "fdisk")
	mkfs := testtool.Need(b, "mkfs.fat", "dosfstools")
	mmd := testtool.Need(b, "mmd", "mtools")
	mcopy := testtool.Need(b, "mcopy", "mtools")
	span, err := layout.BootSpan(benchSize)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "disk.img")
	at := out + "@@" + strconv.FormatInt(span.Start, 10)
	// The tools' peak RSS comes from GNU time: rusage read here would include
	// this process's own peak, which Linux carries over into a child at exec.
	timeCmd, _ := exec.LookPath("time")
	if timeCmd == "" && fileExists("/usr/bin/time") {
		timeCmd = "/usr/bin/time"
	}
	rssFile := filepath.Join(b.TempDir(), "rss")
	var peak int64
	sh := func(stdin string, name string, args ...string) {
		if timeCmd != "" {
			args = append([]string{"-f", "%M", "-o", rssFile, name}, args...)
			name = timeCmd
		}
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), mtoolsEnv...)
		cmd.Stdin = strings.NewReader(stdin)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, o)
		}
		if kb, err := os.ReadFile(rssFile); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(kb)), 10, 64)
			peak = max(peak, n*1024)
		}
	}
	if timeCmd == "" {
		b.Log("GNU time not found (apt-get install time): no peak-rss-MiB for the shell route")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.Remove(out)
		f, err := os.Create(out) // truncate -s 1G
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(benchSize); err != nil {
			b.Fatal(err)
		}
		f.Close()
		sh("label: gpt\nstart="+strconv.FormatInt(span.Start/512, 10)+", size="+strconv.FormatInt(span.Size/512, 10)+
			", type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n", sfdisk, "--quiet", out)
		sh("", mkfs, "-F", "32", "-n", "ESP", "--offset", strconv.FormatInt(span.Start/512, 10), out, strconv.FormatInt(span.Size/1024, 10))
		sh("", mmd, "-i", at, "::/EFI", "::/EFI/BOOT", "::/boot")
		sh("", mcopy, "-i", at, efi, "::/EFI/BOOT/BOOTX64.EFI")
		sh("", mcopy, "-i", at, k.Path, "::/boot/kernel")
		if err := syncFile(out); err != nil { // the Go route syncs before its rename
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(0, "peak-heap-MiB")
	b.ReportMetric(float64(peak)/mib, "peak-rss-MiB")
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// sampleHeap samples the Go heap in use until the returned function is
// called, which reports the peak.
func sampleHeap() func() uint64 {
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// resetPeakRSS resets VmHWM to the current RSS (Linux 4.0+).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v); peak-rss-MiB covers the whole process life", err)
	}
}

// peakRSS reads VmHWM from /proc/self/status.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Logf("no /proc/self/status: %v", err)
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
