package awsharness

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// Parameter Store as the SSM API Reference documents it (awsmodel/ssm.go).
func TestSSMParameterStoreRules(t *testing.T) {
	h := Start(t, Options{})
	c := ssm.NewFromConfig(h.Config(t))
	ctx := context.Background()
	name := "/blog/" + UniqueName("s") + "/tls/key"
	put := func(value string, overwrite bool, typ ssmtypes.ParameterType) (*ssm.PutParameterOutput, error) {
		return c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value), Type: typ, Overwrite: aws.Bool(overwrite)})
	}
	if _, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)}); code(err) != "ParameterNotFound" {
		t.Errorf("missing parameter: %v", err)
	}
	if _, err := put("v1", false, ""); code(err) != "ValidationException" {
		t.Errorf("a new parameter without a Type: %v", err)
	}
	if out, err := put("v1", false, ssmtypes.ParameterTypeSecureString); err != nil || out.Version != 1 {
		t.Fatalf("create: %v %+v", err, out)
	}
	if _, err := put("v2", false, ssmtypes.ParameterTypeSecureString); code(err) != "ParameterAlreadyExists" {
		t.Errorf("a second create without Overwrite: %v", err)
	}
	if out, err := put("v2", true, ""); err != nil || out.Version != 2 {
		t.Fatalf("overwrite: %v %+v", err, out)
	}
	got, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	if err != nil || aws.ToString(got.Parameter.Value) == "v2" || got.Parameter.Type != ssmtypes.ParameterTypeSecureString {
		t.Errorf("a SecureString without WithDecryption: %v, value %q", err, aws.ToString(got.Parameter.Value))
	}
	got, err = c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name + ":1"), WithDecryption: aws.Bool(true)})
	if err != nil || aws.ToString(got.Parameter.Value) != "v1" || got.Parameter.Version != 1 {
		t.Errorf("version 1: %v %+v", err, got)
	}
	if _, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name + ":9")}); code(err) != "ParameterVersionNotFound" {
		t.Errorf("a missing version: %v", err)
	}
	many, err := c.GetParameters(ctx, &ssm.GetParametersInput{Names: []string{name, name + "-missing"}, WithDecryption: aws.Bool(true)})
	if err != nil || len(many.Parameters) != 1 || aws.ToString(many.Parameters[0].Value) != "v2" || !slices.Equal(many.InvalidParameters, []string{name + "-missing"}) {
		t.Errorf("GetParameters: %v %+v", err, many)
	}
	if _, err := put(strings.Repeat("x", 4097), true, ""); code(err) != "ValidationException" {
		t.Errorf("a value over 4 KB in the Standard tier: %v", err)
	}
	// 1011 characters at most: the documented 2048 includes 1037 reserved.
	for _, bad := range []string{"/aws/x", "ssm-thing", "a/b", "/has space", "/" + strings.Repeat("n", 1011)} {
		if _, err := c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(bad), Value: aws.String("v"), Type: ssmtypes.ParameterTypeString}); code(err) != "ValidationException" {
			t.Errorf("name %q accepted: %v", bad, err)
		}
	}
	// By path: one level unless Recursive, at most 10 a page, paged.
	dir := "/blog/" + UniqueName("p")
	for i := range 12 {
		if _, err := c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(fmt.Sprintf("%s/p%02d", dir, i)), Value: aws.String("v"), Type: ssmtypes.ParameterTypeString}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(dir + "/deeper/q"), Value: aws.String("v"), Type: ssmtypes.ParameterTypeString}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetParametersByPath(ctx, &ssm.GetParametersByPathInput{Path: aws.String(dir), MaxResults: aws.Int32(11)}); code(err) != "ValidationException" {
		t.Errorf("MaxResults 11: %v", err)
	}
	var n int
	p := ssm.NewGetParametersByPathPaginator(c, &ssm.GetParametersByPathInput{Path: aws.String(dir)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Parameters)
	}
	if n != 12 {
		t.Errorf("by path, not recursive: %d parameters, want the 12 one level down", n)
	}
	if _, err := c.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String(name)}); code(err) != "ParameterNotFound" {
		t.Errorf("deleting twice: %v", err)
	}
	// DeleteParameters: 1-10 names, missing ones listed, not an error; no
	// create of a deleted name for 30 s.
	if _, err := c.DeleteParameters(ctx, &ssm.DeleteParametersInput{Names: []string{}}); code(err) != "ValidationException" {
		t.Errorf("DeleteParameters of no name: %v", err)
	}
	eleven := make([]string, 11)
	for i := range eleven {
		eleven[i] = fmt.Sprintf("%s/p%02d", dir, i)
	}
	if _, err := c.DeleteParameters(ctx, &ssm.DeleteParametersInput{Names: eleven}); code(err) != "ValidationException" {
		t.Errorf("DeleteParameters of 11 names: %v", err)
	}
	del, err := c.DeleteParameters(ctx, &ssm.DeleteParametersInput{Names: []string{dir + "/p00", dir + "/p01", dir + "/missing"}})
	if err != nil || !slices.Equal(del.DeletedParameters, []string{dir + "/p00", dir + "/p01"}) || !slices.Equal(del.InvalidParameters, []string{dir + "/missing"}) {
		t.Fatalf("DeleteParameters: %+v, %v", del, err)
	}
	if _, ok := h.Model.SSMParameter(dir + "/p00"); ok {
		t.Error("DeleteParameters left the parameter")
	}
	if _, err := c.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(dir + "/p00"), Value: aws.String("v"), Type: ssmtypes.ParameterTypeString}); code(err) != "ValidationException" {
		t.Errorf("a create right after the delete: %v, want it refused (wait 30 s, API_DeleteParameters.html)", err)
	}
}

// Route53 record changes as the Cert step's challenge records meet them
// (awsmodel/records.go): a DELETE must match exactly, a TXT value must be
// quoted strings of at most 255 characters.
func TestRoute53DeleteMustMatchAndTXTMustBeQuoted(t *testing.T) {
	h := Start(t, Options{})
	r := h.Route53(t)
	ctx := context.Background()
	z, err := r.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(UniqueName("rr") + ".test"), CallerReference: aws.String(UniqueName("ref"))})
	if err != nil {
		t.Fatal(err)
	}
	name := "_acme-challenge." + aws.ToString(z.HostedZone.Name)
	change := func(action r53types.ChangeAction, ttl int64, values ...string) error {
		var rrs []r53types.ResourceRecord
		for _, v := range values {
			rrs = append(rrs, r53types.ResourceRecord{Value: aws.String(v)})
		}
		_, err := r.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: z.HostedZone.Id, ChangeBatch: &r53types.ChangeBatch{
			Changes: []r53types.Change{{Action: action, ResourceRecordSet: &r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRTypeTxt, TTL: aws.Int64(ttl), ResourceRecords: rrs}}}}})
		return err
	}
	if err := change(r53types.ChangeActionUpsert, 60, "unquoted"); code(err) != "InvalidChangeBatch" {
		t.Errorf("an unquoted TXT value: %v", err)
	}
	if err := change(r53types.ChangeActionUpsert, 60, `"`+strings.Repeat("a", 256)+`"`); code(err) != "InvalidChangeBatch" {
		t.Errorf("a 256-character TXT string: %v", err)
	}
	if err := change(r53types.ChangeActionUpsert, 60, `"token-1"`, `"token-2"`); err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]func() error{
		"other TTL":    func() error { return change(r53types.ChangeActionDelete, 300, `"token-1"`, `"token-2"`) },
		"fewer values": func() error { return change(r53types.ChangeActionDelete, 60, `"token-1"`) },
	} {
		if err := c(); code(err) != "InvalidChangeBatch" {
			t.Errorf("DELETE with %s: %v", what, err)
		}
	}
	if err := change(r53types.ChangeActionDelete, 60, `"token-1"`, `"token-2"`); err != nil {
		t.Errorf("an exact DELETE: %v", err)
	}
	if err := change(r53types.ChangeActionDelete, 60, `"token-1"`); code(err) != "InvalidChangeBatch" {
		t.Errorf("deleting what is gone: %v", err)
	}
}
