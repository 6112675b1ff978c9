// Package awsmodel is a test-only model of AWS behaviour: what the pipeline
// calls and the in-process emulator kumo (github.com/sivchari/kumo v0.33.1)
// lacks or answers more kindly than AWS. Each rule names the AWS page it
// models. Nothing outside tests may import it.
package awsmodel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Model sits in front of kumo. Each gap was checked against kumo's source
// (internal/service/ec2/handlers.go getActionHandler, and
// internal/service/ebs):
//
//   - EC2 RegisterImage, DescribeImages, DeregisterImage, DescribeSnapshots,
//     DeleteSnapshot and GetConsoleOutput: not among kumo's EC2 actions.
//     EBS snapshots started through the model appear in DescribeSnapshots.
//   - EC2 DryRun: kumo ignores the flag and performs the call; the shim
//     answers DryRunOperation (HTTP 412) as EC2 does when the call would work.
//   - EC2 DescribeInstances filters: kumo reads only InstanceId.N and returns
//     no tagSet; RunInstances ignores TagSpecification. The model tags new
//     instances (through kumo's CreateTags), filters by tag:K, tag-key,
//     instance-state-name, instance-id and image-id, and adds the tagSet.
//     RunInstances refuses an AMI the model does not hold as available.
//   - CreateTags/DeleteTags on ami- and snap- ids: kumo knows no such resources.
//   - EBS errors: kumo puts the error code in the body's "Reason" and sends no
//     X-Amzn-ErrorType, so the SDK would see "UnknownError"; the model adds the
//     header. EBS StartSnapshot ignores ClientToken (AWS returns the same
//     snapshot for the same token); PutSnapshotBlock checks neither the
//     block's SHA256 nor its length; CompleteSnapshot checks neither the
//     changed-block count nor the LINEAR aggregate checksum. The model does all
//     of these as AWS does, ending a snapshot whose aggregate is wrong in
//     state "error", and answers ResourceNotFoundException for snapshots
//     deleted through EC2 (kumo cannot delete them).
//   - EBS CompleteSnapshot is not idempotent: completing a snapshot again is
//     a ValidationException, and so is writing a block after completion ("You
//     cannot write new blocks to a snapshot after it has been completed",
//     EBS direct APIs reference, CompleteSnapshot:
//     https://docs.aws.amazon.com/ebs/latest/APIReference/API_CompleteSnapshot.html).
//     kumo completes a snapshot as often as asked.
//
// records.go (Route53 records), eip.go (Elastic IPs, public addresses) and
// consistency.go (eventual consistency) hold the rest. Everything else goes
// to kumo untouched.
type Model struct {
	kumoURL     string
	client      *http.Client
	pending     int // Describe calls that see a new image, completed snapshot or instance still pending
	lagLooks    int // Describe calls that miss a new instance, AMI or address
	snapshotLag int // EBS calls that find a new snapshot missing

	startMu sync.Mutex // makes a StartSnapshot and its ClientToken lookup atomic
	runMu   sync.Mutex // likewise a RunInstances

	mu        sync.Mutex
	snapshots map[string]*snapshot
	tokens    map[string]string   // StartSnapshot ClientToken → snapshot id
	runTokens map[string][]string // RunInstances ClientToken → instance ids
	images    map[string]*Image
	console   map[string]string

	lag              lag
	nets             map[string]*instanceNet // instance id → its network
	states           map[string]string       // instance id → state, as last read from kumo
	pendingInstances map[string]int          // instance id → Describe calls that still see it pending
	addresses        map[string]*Address     // allocation id → Elastic IP
	associations     map[string]string       // association id → allocation id, ever issued
	addressSeq       int
	zones            map[string]*zoneRecords // hosted zone id → its record sets
	changes          map[string]*change      // Route53 change id → change
	changeLog        []Change
	ssm              map[string]*ssmParameter // SSM Parameter Store (ssm.go)
	ssmDeleted       map[string]time.Time     // when a parameter was deleted: no create of its name for 30 s
}

// Options are the model's windows, in calls (see consistency.go).
type Options struct {
	Pending     int // Describe calls that see a new image, completed snapshot or instance still pending
	Lag         int // Describe calls that miss a new instance, AMI or address
	SnapshotLag int // EBS calls that find a new snapshot missing
}

// AccountID is the account kumo and the model say owns everything.
const AccountID = "000000000000"

// blockSize is the EBS direct API's only block size.
const blockSize = 512 << 10

// Tag is a resource tag.
type Tag struct{ Key, Value string }

// Snapshot is what the model knows of an EBS snapshot started through it.
type Snapshot struct {
	ID          string
	State       string // pending, completed, error
	Message     string // why it is in state error
	VolumeSize  int64  // GiB
	Description string
	Tags        []Tag
	Deleted     bool
	// Blocks maps each block index written to the raw SHA256 of its data.
	Blocks map[int32][sha256.Size]byte
	// Completion is the CompleteSnapshot request, once made.
	Completion *Completion
}

// Completion records the CompleteSnapshot parameters as sent.
type Completion struct {
	ChangedBlocksCount int
	Checksum           string // base64
	Algorithm          string
	Aggregation        string
}

type snapshot struct {
	Snapshot
	startBody     []byte // the StartSnapshot answer, replayed for a repeated ClientToken
	pendingLeft   int
	invisibleLeft int // EBS calls that still find it missing
}

// Image is a registered AMI.
type Image struct {
	ID                  string
	Name                string
	Description         string
	State               string // pending, available
	Architecture        string
	VirtualizationType  string
	BootMode            string
	EnaSupport          bool
	KernelID            string
	RootDeviceName      string
	ImdsSupport         string
	SnapshotID          string
	VolumeSize          int64
	VolumeType          string
	DeleteOnTermination bool
	Tags                []Tag
	Created             time.Time
	pendingLeft         int
}

// New is a model in front of the kumo server at kumoURL.
func New(kumoURL string, o Options) *Model {
	return &Model{
		kumoURL: kumoURL,
		// Enough idle connections for a wide parallel upload, so the hop to
		// kumo does not open a connection per block.
		client:           &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}},
		pending:          o.Pending,
		lagLooks:         o.Lag,
		snapshotLag:      o.SnapshotLag,
		snapshots:        map[string]*snapshot{},
		tokens:           map[string]string{},
		runTokens:        map[string][]string{},
		images:           map[string]*Image{},
		console:          map[string]string{},
		lag:              lag{left: map[string]int{}},
		nets:             map[string]*instanceNet{},
		states:           map[string]string{},
		pendingInstances: map[string]int{},
		addresses:        map[string]*Address{},
		associations:     map[string]string{},
		zones:            map[string]*zoneRecords{},
		changes:          map[string]*change{},
		ssm:              map[string]*ssmParameter{},
	}
}

func (s *Model) Close() { s.client.CloseIdleConnections() }

func (s *Model) Serve(w http.ResponseWriter, r *http.Request, service, op string, body []byte, form url.Values) {
	switch service {
	case "ebs":
		s.serveEBS(w, r, op, body)
	case "ec2":
		s.serveEC2(w, r, op, body, form)
	case "route53":
		s.serveRoute53(w, r, op, body)
	case "ssm":
		s.serveSSM(w, op, body)
	default:
		s.forward(r, body).write(w)
	}
}

// --- forwarding to kumo -------------------------------------------------

type response struct {
	status int
	header http.Header
	body   []byte
}

func (resp *response) write(w http.ResponseWriter) {
	for k, v := range resp.header {
		if k == "Content-Length" {
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

func (s *Model) forward(r *http.Request, body []byte) *response {
	return s.send(r.Context(), r.Method, r.URL.RequestURI(), r.Header.Clone(), body)
}

func (s *Model) send(ctx context.Context, method, uri string, header http.Header, body []byte) *response {
	req, err := http.NewRequestWithContext(ctx, method, s.kumoURL+uri, bytes.NewReader(body))
	if err != nil {
		return internalError(err)
	}
	req.Header = header
	req.ContentLength = int64(len(body))
	resp, err := s.client.Do(req)
	if err != nil {
		return internalError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return internalError(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}
}

func internalError(err error) *response {
	return &response{status: http.StatusBadGateway, header: http.Header{}, body: []byte("awsmodel: reaching kumo: " + err.Error())}
}

// ec2Call makes an EC2 Query call to kumo directly (no faults, not recorded).
func (s *Model) ec2Call(ctx context.Context, form url.Values) *response {
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	h.Set("User-Agent", "awsmodel api/ec2#model")
	form.Set("Version", "2016-11-15")
	return s.send(ctx, http.MethodPost, "/", h, []byte(form.Encode()))
}

// --- EBS ------------------------------------------------------------------

func ebsSnapshotID(path string) string {
	rest, ok := strings.CutPrefix(path, "/snapshots/")
	if !ok {
		return ""
	}
	rest = strings.TrimPrefix(rest, "completion/")
	id, _, _ := strings.Cut(rest, "/")
	return id
}

func (s *Model) serveEBS(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	if op == "StartSnapshot" {
		s.startSnapshot(w, r, body)
		return
	}
	id := ebsSnapshotID(r.URL.Path)
	s.mu.Lock()
	snap := s.snapshots[id]
	missing := snap != nil && snap.Deleted
	if snap != nil && !missing && snap.invisibleLeft > 0 && (op == "PutSnapshotBlock" || op == "CompleteSnapshot") {
		snap.invisibleLeft--
		missing = true
	}
	done := snap != nil && snap.Completion != nil
	s.mu.Unlock()
	switch {
	case missing:
		WriteAPIError(w, "ebs", "ResourceNotFoundException", fmt.Sprintf("The snapshot '%s' does not exist.", id), http.StatusNotFound)
		return
	case done && (op == "PutSnapshotBlock" || op == "CompleteSnapshot"):
		WriteAPIError(w, "ebs", "ValidationException", fmt.Sprintf("The snapshot '%s' is already completed; no block can be written and it cannot be completed again.", id), http.StatusBadRequest)
		return
	}
	switch {
	case op == "PutSnapshotBlock" && snap != nil:
		s.putBlock(w, r, snap, body)
	case op == "CompleteSnapshot" && snap != nil:
		s.completeSnapshot(w, r, snap, body)
	default:
		fixEBSError(s.forward(r, body)).write(w)
	}
}

// fixEBSError moves kumo's error code from the body's Reason to the
// X-Amzn-ErrorType header, where the SDK looks for it.
func fixEBSError(resp *response) *response {
	if resp.status < 400 || resp.header.Get("X-Amzn-ErrorType") != "" {
		return resp
	}
	var e struct{ Reason string }
	if json.Unmarshal(resp.body, &e) == nil && strings.HasSuffix(e.Reason, "Exception") {
		resp.header.Set("X-Amzn-ErrorType", e.Reason)
	}
	return resp
}

func (s *Model) startSnapshot(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		ClientToken string
		Description string
		VolumeSize  int64
		Timeout     int32
		Tags        []Tag
	}
	if err := json.Unmarshal(body, &in); err != nil {
		WriteAPIError(w, "ebs", "ValidationException", "malformed StartSnapshot body", http.StatusBadRequest)
		return
	}
	if in.Timeout != 0 && (in.Timeout < 10 || in.Timeout > 4320) {
		WriteAPIError(w, "ebs", "ValidationException", "Timeout must be between 10 and 4320 minutes", http.StatusBadRequest)
		return
	}
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.mu.Lock()
	if id, ok := s.tokens[in.ClientToken]; ok && in.ClientToken != "" {
		// AWS answers a repeated token with the snapshot it already made,
		// even one deleted since: a retry never makes a twin.
		replay := s.snapshots[id].startBody
		s.mu.Unlock()
		(&response{status: http.StatusCreated, header: http.Header{"Content-Type": {"application/json"}}, body: replay}).write(w)
		return
	}
	s.mu.Unlock()

	resp := fixEBSError(s.forward(r, body))
	if resp.status == http.StatusCreated {
		var out struct{ SnapshotId string }
		if err := json.Unmarshal(resp.body, &out); err == nil && out.SnapshotId != "" {
			s.mu.Lock()
			s.snapshots[out.SnapshotId] = &snapshot{
				Snapshot: Snapshot{
					ID: out.SnapshotId, State: "pending", VolumeSize: in.VolumeSize,
					Description: in.Description, Tags: in.Tags, Blocks: map[int32][sha256.Size]byte{},
				},
				startBody:     resp.body,
				invisibleLeft: s.snapshotLag,
			}
			s.lag.hide(out.SnapshotId, s.lagLooks)
			if in.ClientToken != "" {
				s.tokens[in.ClientToken] = out.SnapshotId
			}
			s.mu.Unlock()
		}
	}
	resp.write(w)
}

func (s *Model) putBlock(w http.ResponseWriter, r *http.Request, snap *snapshot, body []byte) {
	idx, err := strconv.ParseInt(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:], 10, 32)
	if err != nil {
		WriteAPIError(w, "ebs", "ValidationException", "bad block index", http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	s.mu.Lock()
	volume := snap.VolumeSize
	s.mu.Unlock()
	switch {
	case len(body) != blockSize || r.Header.Get("X-Amz-Data-Length") != strconv.Itoa(blockSize):
		WriteAPIError(w, "ebs", "ValidationException", fmt.Sprintf("block data must be %d bytes, got %d", blockSize, len(body)), http.StatusBadRequest)
		return
	case r.Header.Get("X-Amz-Checksum-Algorithm") != "SHA256":
		WriteAPIError(w, "ebs", "ValidationException", "ChecksumAlgorithm must be SHA256", http.StatusBadRequest)
		return
	case r.Header.Get("X-Amz-Checksum") != base64.StdEncoding.EncodeToString(sum[:]):
		WriteAPIError(w, "ebs", "ValidationException", "the checksum does not match the block data (INVALID_CHECKSUM)", http.StatusBadRequest)
		return
	case idx < 0 || idx >= volume<<30/blockSize:
		WriteAPIError(w, "ebs", "ValidationException", fmt.Sprintf("block index %d is beyond the %d GiB volume (INVALID_BLOCK)", idx, volume), http.StatusBadRequest)
		return
	}
	resp := fixEBSError(s.forward(r, body))
	if resp.status == http.StatusCreated {
		s.mu.Lock()
		snap.Blocks[int32(idx)] = sum
		s.mu.Unlock()
	}
	resp.write(w)
}

func (s *Model) completeSnapshot(w http.ResponseWriter, r *http.Request, snap *snapshot, body []byte) {
	count, _ := strconv.Atoi(r.Header.Get("X-Amz-ChangedBlocksCount"))
	c := &Completion{
		ChangedBlocksCount: count,
		Checksum:           r.Header.Get("X-Amz-Checksum"),
		Algorithm:          r.Header.Get("X-Amz-Checksum-Algorithm"),
		Aggregation:        r.Header.Get("X-Amz-Checksum-Aggregation-Method"),
	}
	resp := fixEBSError(s.forward(r, body))
	if resp.status/100 == 2 {
		s.mu.Lock()
		snap.Completion = c
		snap.pendingLeft = s.pending
		switch want := linearChecksum(snap.Blocks); {
		case count != len(snap.Blocks):
			snap.State, snap.Message = "error", fmt.Sprintf("ChangedBlocksCount %d, but %d blocks were written", count, len(snap.Blocks))
		case c.Checksum != "" && (c.Algorithm != "SHA256" || c.Aggregation != "LINEAR"):
			snap.State, snap.Message = "error", "checksum must be SHA256 with LINEAR aggregation"
		case c.Checksum != "" && c.Checksum != want:
			snap.State, snap.Message = "error", "the aggregate checksum does not match the blocks written"
		default:
			snap.State = "completed"
		}
		status := snap.State
		if status == "completed" && snap.pendingLeft > 0 {
			status = "pending"
		}
		s.mu.Unlock()
		resp.body = withStatus(resp.body, status)
	}
	resp.write(w)
}

// withStatus sets the CompleteSnapshot answer's Status to the model's
// state: kumo answers "completed" whatever the blocks and checksum were,
// where EBS answers the snapshot's status, "completed | pending | error"
// (EBS direct APIs reference, CompleteSnapshot, response elements), and
// EC2 shows it pending for as long as the model's pending window lasts.
func withStatus(body []byte, status string) []byte {
	var out map[string]any
	if json.Unmarshal(body, &out) != nil {
		out = map[string]any{}
	}
	out["Status"] = status
	data, err := json.Marshal(out)
	if err != nil {
		return body
	}
	return data
}

// linearChecksum is AWS's LINEAR aggregate: SHA256 over the blocks' raw
// SHA256 digests concatenated in block-index order, base64.
func linearChecksum(blocks map[int32][sha256.Size]byte) string {
	idx := make([]int, 0, len(blocks))
	for i := range blocks {
		idx = append(idx, int(i))
	}
	sort.Ints(idx)
	h := sha256.New()
	for _, i := range idx {
		d := blocks[int32(i)]
		h.Write(d[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// --- helpers for tests ----------------------------------------------------

// Snapshot returns a copy of what the model knows of snapshot id.
func (s *Model) Snapshot(id string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[id]
	if !ok {
		return Snapshot{}, false
	}
	c := snap.Snapshot
	c.Blocks = make(map[int32][sha256.Size]byte, len(snap.Blocks))
	for k, v := range snap.Blocks {
		c.Blocks[k] = v
	}
	return c, true
}

// Image returns a copy of image id, if registered and not deregistered.
func (s *Model) Image(id string) (Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[id]
	if !ok {
		return Image{}, false
	}
	return *img, true
}

// SnapshotsTagged lists the ids of snapshots not deleted that carry tag key=value.
func (s *Model) SnapshotsTagged(key, value string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, snap := range s.snapshots {
		if !snap.Deleted && hasTag(snap.Tags, key, value) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// ImagesTagged lists the ids of registered images that carry tag key=value.
func (s *Model) ImagesTagged(key, value string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, img := range s.images {
		if hasTag(img.Tags, key, value) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// InstancesTagged lists the ids of instances not terminated that carry tag
// key=value, asking kumo (instances live there).
func (s *Model) InstancesTagged(ctx context.Context, key, value string) ([]string, error) {
	insts, err := s.instances(ctx, url.Values{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, in := range insts {
		if in.State.Name != "terminated" && hasTag(fromXMLTags(in.TagSet), key, value) {
			ids = append(ids, in.InstanceID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// SetConsoleOutput sets what GetConsoleOutput returns for an instance.
func (s *Model) SetConsoleOutput(instanceID, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.console[instanceID] = text
}

func hasTag(tags []Tag, key, value string) bool {
	for _, t := range tags {
		if t.Key == key && t.Value == value {
			return true
		}
	}
	return false
}

// InstanceState is the state and tags of one instance; found is false when
// the instance does not exist.
func (s *Model) InstanceState(ctx context.Context, id string) (state string, tags []Tag, found bool, err error) {
	insts, err := s.instances(ctx, url.Values{"InstanceId.1": {id}})
	if err != nil || len(insts) == 0 {
		return "", nil, false, err
	}
	state = insts[0].State.Name
	s.mu.Lock()
	if state == "running" && s.pendingInstances[id] > 0 {
		state = "pending" // still booting, as EC2 shows it
	}
	s.mu.Unlock()
	return state, fromXMLTags(insts[0].TagSet), true, nil
}

// InstanceImage is the state and AMI of one instance; found is false when
// the instance does not exist.
func (s *Model) InstanceImage(ctx context.Context, id string) (state, image string, found bool, err error) {
	state, _, found, err = s.InstanceState(ctx, id)
	if err != nil || !found {
		return "", "", found, err
	}
	insts, err := s.instances(ctx, url.Values{"InstanceId.1": {id}})
	if err != nil || len(insts) == 0 {
		return "", "", false, err
	}
	return state, insts[0].ImageID, true, nil
}

// SnapshotData reads a snapshot's written blocks back from kumo, by index,
// and its volume size in bytes.
func (s *Model) SnapshotData(ctx context.Context, id string) (map[int32][]byte, int64, error) {
	s.mu.Lock()
	snap, ok := s.snapshots[id]
	var idx []int32
	var size int64
	if ok {
		for i := range snap.Blocks {
			idx = append(idx, i)
		}
		size = snap.VolumeSize << 30
	}
	s.mu.Unlock()
	if !ok {
		return nil, 0, fmt.Errorf("no snapshot %s", id)
	}
	h := http.Header{}
	h.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDMODEL/20260101/us-east-1/ebs/aws4_request, SignedHeaders=host, Signature=0")
	h.Set("User-Agent", "awsmodel api/ebs#model")
	out := make(map[int32][]byte, len(idx))
	for _, i := range idx {
		resp := s.send(ctx, http.MethodGet, fmt.Sprintf("/snapshots/%s/blocks/%d?blockToken=model", id, i), h.Clone(), nil)
		if resp.status != http.StatusOK {
			return nil, 0, fmt.Errorf("reading block %d of %s from kumo: HTTP %d: %s", i, id, resp.status, resp.body)
		}
		out[i] = resp.body
	}
	return out, size, nil
}
