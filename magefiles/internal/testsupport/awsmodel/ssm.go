package awsmodel

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SSM Parameter Store, the parameters the Cert step keeps its account key,
// certificate chain and private key in. kumo v0.33.1 has an SSM service, but
// kinder than AWS: no parameter-name rules, no value size limit, no version
// history (GetParameter of name:N), MaxResults unchecked, and a new
// parameter without a Type becomes a String. The model serves these calls
// itself, rule by rule, from the SSM API Reference:
//
//   - PutParameter (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html):
//     an existing name without Overwrite is ParameterAlreadyExists; Overwrite
//     writes a new version (Version+1, the answer says which); a new parameter
//     needs a Type (String, StringList, SecureString); names are 1-1011 of
//     a-zA-Z0-9_.-/ (the page's 2048 "includes 1037 characters reserved for
//     internal use"), must not begin with aws or ssm (any case), at most 15
//     levels, and a hierarchical name begins with /; a Standard-tier value is
//     at most 4 KB (ValidationException); Tags cannot be given with
//     Overwrite. SecureString values are encrypted with the account's
//     AWS-managed key alias/aws/ssm unless KeyId names another.
//   - GetParameter (…/API_GetParameter.html): a missing name is
//     ParameterNotFound; name:N selects version N (ParameterVersionNotFound);
//     a SecureString without WithDecryption answers its ciphertext, never
//     the value.
//   - GetParameters (…/API_GetParameters.html): 1-10 names; the missing ones
//     are listed in InvalidParameters, not an error.
//   - GetParametersByPath (…/API_GetParametersByPath.html): Path begins with
//     /; MaxResults 1-10; Recursive false answers only the level just below
//     Path; NextToken pages.
//   - DeleteParameter (…/API_DeleteParameter.html): a missing name is
//     ParameterNotFound; deleting removes every version.
//   - DeleteParameters (…/API_DeleteParameters.html): Names holds 1 to 10
//     names (ValidationException otherwise), each a name, not an ARN; the
//     answer lists the names deleted in DeletedParameters and the ones that
//     were not (no such parameter) in InvalidParameters, not an error.
//     "After deleting a parameter, wait for at least 30 seconds to create a
//     parameter with the same name" (same page): a create of a name deleted
//     less than 30 s before is refused here (AWS names no error code for it;
//     the model answers ValidationException), so nothing passes here that
//     relies on re-creating at once.
//
// Parameter versions: Parameter Store keeps the last 100
// (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-versions.html).
type ssmParameter struct {
	versions []SSMVersion // oldest first
}

// SSMVersion is one version of a parameter as the model holds it.
type SSMVersion struct {
	Name     string
	Type     string
	Value    string
	KeyID    string
	Version  int64
	Modified time.Time
}

var (
	ssmNameRE    = regexp.MustCompile(`^[a-zA-Z0-9_.\-/]+$`)
	ssmReserved  = regexp.MustCompile(`(?i)^/?(aws|ssm)`)
	ssmTypes     = map[string]bool{"String": true, "StringList": true, "SecureString": true}
	ssmMaxValue  = 4096 // Standard tier
	ssmMaxKeep   = 100
	ssmMaxByPath = 10
	// ssmRecreateAfter: "After deleting a parameter, wait for at least 30
	// seconds to create a parameter with the same name" (API_DeleteParameter.html,
	// API_DeleteParameters.html).
	ssmRecreateAfter = 30 * time.Second
)

func (s *Model) serveSSM(w http.ResponseWriter, op string, body []byte) {
	var out any
	var err *ssmErr
	switch op {
	case "PutParameter":
		out, err = s.ssmPut(body)
	case "GetParameter":
		out, err = s.ssmGet(body)
	case "GetParameters":
		out, err = s.ssmGetMany(body)
	case "GetParametersByPath":
		out, err = s.ssmGetByPath(body)
	case "DeleteParameter":
		out, err = s.ssmDelete(body)
	case "DeleteParameters":
		out, err = s.ssmDeleteMany(body)
	default:
		err = &ssmErr{"InvalidAction", "awsmodel does not model ssm:" + op}
	}
	if err != nil {
		WriteAPIError(w, "ssm", err.code, err.msg, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", NewRequestID())
	_ = json.NewEncoder(w).Encode(out)
}

type ssmErr struct{ code, msg string }

func validation(format string, args ...any) *ssmErr {
	return &ssmErr{"ValidationException", fmt.Sprintf(format, args...)}
}

// maxSSMNameLen is the longest name PutParameter creates: API_PutParameter's
// 2048 "includes 1037 characters reserved for internal use by Systems
// Manager", leaving 1011.
const maxSSMNameLen = 2048 - 1037

func checkSSMName(name string) *ssmErr {
	switch {
	case len(name) > maxSSMNameLen || !ssmNameRE.MatchString(name):
		return validation("Parameter name %q: only a-zA-Z0-9_.-/ are allowed, 1 to %d characters", name, maxSSMNameLen)
	case ssmReserved.MatchString(name):
		return validation("Parameter name %q: names can't be prefixed with aws or ssm (case-insensitive)", name)
	case strings.Contains(name, "/") && !strings.HasPrefix(name, "/"):
		return validation("Parameter name %q: a name in a hierarchy must begin with /", name)
	case strings.Count(name, "/") > 15:
		return validation("Parameter name %q: a hierarchy has at most 15 levels", name)
	}
	return nil
}

func (s *Model) ssmPut(body []byte) (any, *ssmErr) {
	var in struct {
		Name, Value, Type, KeyId, Tier string
		Overwrite                      bool
		Tags                           []Tag
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, validation("malformed PutParameter body")
	}
	if e := checkSSMName(in.Name); e != nil {
		return nil, e
	}
	if in.Type != "" && !ssmTypes[in.Type] {
		return nil, validation("Type %q is not String, StringList or SecureString", in.Type)
	}
	if in.Tier != "" && in.Tier != "Standard" {
		return nil, validation("awsmodel models only the Standard tier (the free one), not %q", in.Tier)
	}
	if len(in.Value) > ssmMaxValue {
		return nil, validation("Standard tier parameters support a maximum parameter value of 4096 characters; this value has %d", len(in.Value))
	}
	if in.Value == "" {
		return nil, validation("Value must be at least 1 character")
	}
	if in.Overwrite && len(in.Tags) > 0 {
		return nil, validation("Tags and Overwrite can't be used together: tag an existing parameter with AddTagsToResource")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ssm[in.Name]
	if p != nil && !in.Overwrite {
		return nil, &ssmErr{"ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."}
	}
	typ := in.Type
	if p == nil {
		if typ == "" {
			return nil, validation("A parameter type is required when you create a parameter")
		}
		if at, ok := s.ssmDeleted[in.Name]; ok && time.Since(at) < ssmRecreateAfter {
			return nil, validation("Parameter %s was deleted %s ago: wait at least 30 seconds after deleting a parameter to create one with the same name", in.Name, time.Since(at).Round(time.Millisecond))
		}
		p = &ssmParameter{}
		s.ssm[in.Name] = p
	} else if typ == "" {
		typ = p.versions[len(p.versions)-1].Type
	}
	key := ""
	if typ == "SecureString" {
		key = in.KeyId
		if key == "" {
			key = "alias/aws/ssm"
		}
	}
	v := SSMVersion{Name: in.Name, Type: typ, Value: in.Value, KeyID: key, Version: 1, Modified: time.Now()}
	if n := len(p.versions); n > 0 {
		v.Version = p.versions[n-1].Version + 1
	}
	p.versions = append(p.versions, v)
	if len(p.versions) > ssmMaxKeep {
		p.versions = p.versions[1:]
	}
	return map[string]any{"Version": v.Version, "Tier": "Standard"}, nil
}

// ssmValue is a Parameter of an answer.
func ssmValue(v SSMVersion, decrypt bool) map[string]any {
	value := v.Value
	if v.Type == "SecureString" && !decrypt {
		value = ciphertext(v)
	}
	return map[string]any{
		"Name": v.Name, "Type": v.Type, "Value": value, "Version": v.Version, "DataType": "text",
		"LastModifiedDate": float64(v.Modified.UnixMilli()) / 1000,
		"ARN":              "arn:aws:ssm:us-east-1:" + AccountID + ":parameter/" + strings.TrimPrefix(v.Name, "/"),
	}
}

// ciphertext stands for the KMS blob AWS answers without WithDecryption:
// base64, and never the value itself.
func ciphertext(v SSMVersion) string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	sum := sha256.Sum256(append(nonce[:], v.Value...))
	return base64.StdEncoding.EncodeToString(append([]byte("AQICAHh"), append(nonce[:], sum[:]...)...))
}

// lookup finds name or name:version; the caller holds s.mu.
func (s *Model) ssmLookup(sel string) (SSMVersion, *ssmErr) {
	name, ver, hasVer := strings.Cut(sel, ":")
	p := s.ssm[name]
	if p == nil {
		return SSMVersion{}, &ssmErr{"ParameterNotFound", fmt.Sprintf("Parameter %s not found.", name)}
	}
	if !hasVer {
		return p.versions[len(p.versions)-1], nil
	}
	n, err := strconv.ParseInt(ver, 10, 64)
	if err != nil {
		return SSMVersion{}, validation("%q: a version selector is a number", sel)
	}
	for _, v := range p.versions {
		if v.Version == n {
			return v, nil
		}
	}
	return SSMVersion{}, &ssmErr{"ParameterVersionNotFound", fmt.Sprintf("Version %d of parameter %s not found.", n, name)}
}

func (s *Model) ssmGet(body []byte) (any, *ssmErr) {
	var in struct {
		Name           string
		WithDecryption bool
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, validation("malformed GetParameter body")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.ssmLookup(in.Name)
	if e != nil {
		return nil, e
	}
	return map[string]any{"Parameter": ssmValue(v, in.WithDecryption)}, nil
}

func (s *Model) ssmGetMany(body []byte) (any, *ssmErr) {
	var in struct {
		Names          []string
		WithDecryption bool
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, validation("malformed GetParameters body")
	}
	if len(in.Names) < 1 || len(in.Names) > 10 {
		return nil, validation("Names must hold 1 to 10 names, not %d", len(in.Names))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	params, invalid := []any{}, []string{}
	for _, n := range in.Names {
		v, e := s.ssmLookup(n)
		if e != nil {
			invalid = append(invalid, n)
			continue
		}
		params = append(params, ssmValue(v, in.WithDecryption))
	}
	return map[string]any{"Parameters": params, "InvalidParameters": invalid}, nil
}

func (s *Model) ssmGetByPath(body []byte) (any, *ssmErr) {
	var in struct {
		Path                      string
		Recursive, WithDecryption bool
		MaxResults                int
		NextToken                 string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, validation("malformed GetParametersByPath body")
	}
	if !strings.HasPrefix(in.Path, "/") {
		return nil, validation("Path %q must begin with /", in.Path)
	}
	if in.MaxResults == 0 {
		in.MaxResults = ssmMaxByPath
	}
	if in.MaxResults < 1 || in.MaxResults > ssmMaxByPath {
		return nil, validation("MaxResults %d is outside 1..10", in.MaxResults)
	}
	prefix := strings.TrimSuffix(in.Path, "/") + "/"
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.ssm {
		rest, ok := strings.CutPrefix(n, prefix)
		if ok && (in.Recursive || !strings.Contains(rest, "/")) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	start := 0
	if in.NextToken != "" {
		b, err := base64.StdEncoding.DecodeString(in.NextToken)
		if err != nil {
			return nil, validation("The NextToken is invalid")
		}
		start = sort.SearchStrings(names, string(b))
	}
	out := map[string]any{}
	params := []any{}
	for i := start; i < len(names); i++ {
		if len(params) == in.MaxResults {
			out["NextToken"] = base64.StdEncoding.EncodeToString([]byte(names[i]))
			break
		}
		p := s.ssm[names[i]]
		params = append(params, ssmValue(p.versions[len(p.versions)-1], in.WithDecryption))
	}
	out["Parameters"] = params
	return out, nil
}

func (s *Model) ssmDelete(body []byte) (any, *ssmErr) {
	var in struct{ Name string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, validation("malformed DeleteParameter body")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ssm[in.Name] == nil {
		return nil, &ssmErr{"ParameterNotFound", fmt.Sprintf("Parameter %s not found.", in.Name)}
	}
	s.ssmForget(in.Name)
	return map[string]any{}, nil
}

func (s *Model) ssmDeleteMany(body []byte) (any, *ssmErr) {
	var in struct{ Names []string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, validation("malformed DeleteParameters body")
	}
	if len(in.Names) < 1 || len(in.Names) > 10 {
		return nil, validation("Names must hold 1 to 10 names, not %d", len(in.Names))
	}
	for _, n := range in.Names {
		if strings.HasPrefix(n, "arn:") {
			return nil, validation("%q: DeleteParameters takes parameter names, not ARNs", n)
		}
		if len(n) < 1 || len(n) > 2048 {
			return nil, validation("a name is 1 to 2048 characters, not %d", len(n))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	deleted, invalid := []string{}, []string{}
	for _, n := range in.Names {
		if s.ssm[n] == nil {
			invalid = append(invalid, n)
			continue
		}
		s.ssmForget(n)
		deleted = append(deleted, n)
	}
	return map[string]any{"DeletedParameters": deleted, "InvalidParameters": invalid}, nil
}

// ssmForget deletes a parameter and notes when, for the 30 s before its
// name may be created again; the caller holds s.mu.
func (s *Model) ssmForget(name string) {
	delete(s.ssm, name)
	if s.ssmDeleted == nil {
		s.ssmDeleted = map[string]time.Time{}
	}
	s.ssmDeleted[name] = time.Now()
}

// SSMParameter is the newest version of a parameter, for tests that check
// what the code under test stored.
func (s *Model) SSMParameter(name string) (SSMVersion, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ssm[name]
	if p == nil {
		return SSMVersion{}, false
	}
	return p.versions[len(p.versions)-1], true
}

// SSMNames lists the parameters under prefix.
func (s *Model) SSMNames(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.ssm {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// SetSSMParameter writes a parameter as an earlier run would have (a new
// version), bypassing the recorder: tests plant state with it.
func (s *Model) SetSSMParameter(name, typ, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.ssm[name]
	if p == nil {
		p = &ssmParameter{}
		s.ssm[name] = p
	}
	v := SSMVersion{Name: name, Type: typ, Value: value, Version: 1, Modified: time.Now()}
	if n := len(p.versions); n > 0 {
		v.Version = p.versions[n-1].Version + 1
	}
	p.versions = append(p.versions, v)
}
