package policy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

var example = Params{Region: "eu-west-1", Account: "123456789012", Site: "blog.example.com", Domain: "blog.example.com", ZoneID: "Z0123456789ABCDEFGHIJ", ZoneName: "example.com."}

func statements(d Document, action string) []Statement {
	var out []Statement
	for _, s := range d.Statement {
		if slices.Contains(s.Action, action) {
			out = append(out, s)
		}
	}
	return out
}

func TestPolicyIsValidJSONWithoutWildcardActions(t *testing.T) {
	d := Build(example)
	b, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Document
	if err := json.Unmarshal(b, &back); err != nil || back.Version != Version || len(back.Statement) != len(d.Statement) {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	sids := map[string]bool{}
	for _, s := range d.Statement {
		if sids[s.Sid] {
			t.Errorf("duplicate Sid %s", s.Sid)
		}
		sids[s.Sid] = true
		if s.Effect != "Allow" || len(s.Resource) == 0 {
			t.Errorf("statement %s: %+v", s.Sid, s)
		}
		for _, a := range s.Action {
			if strings.Contains(a, "*") || !strings.Contains(a, ":") {
				t.Errorf("statement %s allows %q: wildcards are not least privilege", s.Sid, a)
			}
		}
		if s.Resource[0] == "*" && s.Condition == nil && !strings.HasPrefix(s.Sid, "Describe") && s.Sid != "FindZoneByName" {
			t.Errorf("statement %s allows %v on every resource", s.Sid, s.Action)
		}
	}
	if slices.Contains(d.Actions(), "sts:GetCallerIdentity") || slices.Contains(d.Actions(), "iam:PassRole") {
		t.Errorf("actions %v: GetCallerIdentity needs no grant, PassRole no instance profile is used for", d.Actions())
	}
}

func TestDestructiveCallsAreScopedToTheSite(t *testing.T) {
	d := Build(example)
	for _, a := range []string{"ec2:TerminateInstances", "ec2:DeregisterImage", "ec2:DeleteSnapshot", "ebs:PutSnapshotBlock", "ebs:CompleteSnapshot", "ec2:GetConsoleOutput", "ec2:RevokeSecurityGroupIngress",
		"ec2:DeleteSecurityGroup", "ec2:AssociateAddress", "ec2:DisassociateAddress", "ec2:ReleaseAddress"} {
		ss := statements(d, a)
		if len(ss) == 0 {
			t.Errorf("%s not granted", a)
		}
		for _, s := range ss {
			if s.Condition["StringEquals"]["aws:ResourceTag/blog:site"] != "blog.example.com" {
				t.Errorf("%s in %s is not limited to resources tagged blog:site=blog.example.com: %v", a, s.Sid, s.Condition)
			}
		}
	}
	for _, s := range statements(d, "ec2:CreateTags") {
		c := s.Condition
		// StartSnapshot's tags are ec2:CreateTags on the snapshot, as AWS's
		// own example grants it: snapshots only.
		snapshotsOnly := slices.Equal(s.Resource, []string{"arn:aws:ec2:eu-west-1::snapshot/*"})
		if c["StringEquals"]["ec2:CreateAction"] == nil && c["ForAllValues:StringEquals"]["aws:TagKeys"] == nil && !snapshotsOnly {
			t.Errorf("CreateTags in %s neither at creation nor limited to the pipeline's own tag keys nor StartSnapshot's: %v", s.Sid, c)
		}
		if keys := c["ForAllValues:StringEquals"]["aws:TagKeys"]; keys != nil && slices.Contains(keys.([]string), "blog:site") {
			t.Errorf("CreateTags in %s lets an existing resource be tagged with the site, and so made the site's: %v", s.Sid, keys)
		}
	}
	if ss := statements(d, "ec2:AllocateAddress"); len(ss) != 1 || ss[0].Condition["StringEquals"]["aws:RequestTag/blog:site"] != "blog.example.com" {
		t.Errorf("AllocateAddress may allocate an address without the site's tag: %+v", ss)
	}
	ss := statements(d, "ebs:StartSnapshot")
	if len(ss) != 1 || ss[0].Resource[0] != "arn:aws:ec2:eu-west-1::snapshot/*" || ss[0].Condition["StringEquals"]["aws:RequestTag/blog:site"] != "blog.example.com" {
		t.Errorf("StartSnapshot: %+v", ss)
	}
	var instanceTagged bool
	for _, s := range statements(d, "ec2:RunInstances") {
		if slices.Contains(s.Resource, "arn:aws:ec2:eu-west-1:123456789012:instance/*") {
			instanceTagged = s.Condition["StringEquals"]["aws:RequestTag/blog:site"] == "blog.example.com"
		}
	}
	if !instanceTagged {
		t.Error("RunInstances may start instances without the site's tag")
	}
}

func TestRecordChangeIsPinnedToTheZoneAndName(t *testing.T) {
	d := Build(example)
	ss := statements(d, "route53:ChangeResourceRecordSets")
	if len(ss) != 2 {
		t.Fatalf("ChangeResourceRecordSets: %+v, want the record's statement and the lease's", ss)
	}
	want := map[string][3][]string{ // names, types, actions
		"TheBlogRecordOnly":  {{"blog.example.com"}, {"A", "CNAME"}, {"CREATE", "DELETE"}},
		"TheDeployLeaseOnly": {{"_deploy-lease.blog.example.com"}, {"TXT"}, {"CREATE", "DELETE"}},
	}
	for _, s := range ss {
		w, ok := want[s.Sid]
		if !ok || !slices.Equal(s.Resource, []string{"arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"}) {
			t.Errorf("statement %+v", s)
			continue
		}
		c := s.Condition["ForAllValues:StringEquals"]
		if !slices.Equal(c["route53:ChangeResourceRecordSetsNormalizedRecordNames"].([]string), w[0]) ||
			!slices.Equal(c["route53:ChangeResourceRecordSetsRecordTypes"].([]string), w[1]) ||
			!slices.Equal(c["route53:ChangeResourceRecordSetsActions"].([]string), w[2]) {
			t.Errorf("%s conditions %v, want names %v types %v actions %v", s.Sid, c, w[0], w[1], w[2])
		}
	}
	apex := example
	apex.Domain = "example.com"
	if got := statements(Build(apex), "route53:ChangeResourceRecordSets")[0].Condition["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsRecordTypes"]; !slices.Equal(got.([]string), []string{"A"}) {
		t.Errorf("apex record types %v, want A", got)
	}
	unknown := example
	unknown.ZoneID, unknown.ZoneName = "", ""
	if got := statements(Build(unknown), "route53:ChangeResourceRecordSets")[0].Resource; !slices.Equal(got, []string{"arn:aws:route53:::hostedzone/*"}) {
		t.Errorf("unknown zone: %v", got)
	}
}

func TestConfigurationPicksTheCallsMade(t *testing.T) {
	listed := Build(example).Actions()
	pinned := example
	pinned.ZoneConfigured, pinned.SubnetID = true, "subnet-0123456789abcdef0"
	got := Build(pinned).Actions()
	if !slices.Contains(listed, "route53:ListHostedZones") || slices.Contains(listed, "route53:GetHostedZone") || slices.Contains(listed, "ec2:DescribeSubnets") {
		t.Errorf("without hosted_zone_id and subnet_id: %v", listed)
	}
	if slices.Contains(got, "route53:ListHostedZones") || !slices.Contains(got, "route53:GetHostedZone") || !slices.Contains(got, "ec2:DescribeSubnets") {
		t.Errorf("with hosted_zone_id and subnet_id: %v", got)
	}
	for _, s := range statements(Build(pinned), "ec2:RunInstances") {
		for _, r := range s.Resource {
			if strings.Contains(r, ":subnet/") && r != "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-0123456789abcdef0" {
				t.Errorf("subnet resource %s, want the configured one", r)
			}
		}
	}
}

// TestHTTPSGrantsOnlyThisSitesTLSState pins what https adds: Parameter
// Store calls on this site's /blog/<site>/tls/* and nothing wider, and
// record changes for the challenges of exactly the site's names, TXT, with
// UPSERT and DELETE (lego presents with UPSERT; lego, the sweep and destroy
// delete). Any widening (another path, a wildcard, another name, type or
// action, one more statement) fails here.
func TestHTTPSGrantsOnlyThisSitesTLSState(t *testing.T) {
	p := example
	p.HTTPS, p.Names = true, []string{"blog.example.com", "WWW.blog.example.com."}
	d := Build(p)

	wantSSM := map[string][]string{ // Sid → actions
		"CertificateParameters":        {"ssm:GetParameters", "ssm:PutParameter"},
		"DestroyCertificateParameters": {"ssm:DeleteParameters"},
	}
	arn := "arn:aws:ssm:eu-west-1:123456789012:parameter/blog/blog.example.com/tls/*"
	seen := 0
	for _, s := range d.Statement {
		var ssm []string
		for _, a := range s.Action {
			if strings.HasPrefix(a, "ssm:") {
				ssm = append(ssm, a)
			}
		}
		if len(ssm) == 0 {
			continue
		}
		seen++
		if !slices.Equal(s.Action, wantSSM[s.Sid]) || !slices.Equal(s.Resource, []string{arn}) || s.Condition != nil {
			t.Errorf("statement %s grants %v on %v (condition %v); want %v on %s only", s.Sid, s.Action, s.Resource, s.Condition, wantSSM[s.Sid], arn)
		}
	}
	if seen != len(wantSSM) {
		t.Errorf("%d statements grant ssm: actions, want %d", seen, len(wantSSM))
	}

	ss := statements(d, "route53:ChangeResourceRecordSets")
	if len(ss) != 3 {
		t.Fatalf("ChangeResourceRecordSets in %d statements, want the record's, the lease's and the challenges'", len(ss))
	}
	var ch *Statement
	for i := range ss {
		if ss[i].Sid == "AnswerACMEChallengesOnly" {
			ch = &ss[i]
		}
	}
	if ch == nil {
		t.Fatalf("no challenge statement: %+v", ss)
	}
	if !slices.Equal(ch.Action, []string{"route53:ChangeResourceRecordSets"}) || !slices.Equal(ch.Resource, []string{"arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"}) {
		t.Errorf("challenge statement %+v: want ChangeResourceRecordSets on the zone only", ch)
	}
	if len(ch.Condition) != 1 || len(ch.Condition["ForAllValues:StringEquals"]) != 3 {
		t.Fatalf("challenge conditions %v: want exactly names, types and actions under ForAllValues:StringEquals", ch.Condition)
	}
	c := ch.Condition["ForAllValues:StringEquals"]
	for key, want := range map[string][]string{
		"route53:ChangeResourceRecordSetsNormalizedRecordNames": {"_acme-challenge.blog.example.com", "_acme-challenge.www.blog.example.com"},
		"route53:ChangeResourceRecordSetsRecordTypes":           {"TXT"},
		"route53:ChangeResourceRecordSetsActions":               {"UPSERT", "DELETE"},
	} {
		if got, _ := c[key].([]string); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", key, c[key], want)
		}
	}

	// Without https: no Parameter Store grant and no challenge statement.
	for _, s := range Build(example).Statement {
		for _, a := range s.Action {
			if strings.HasPrefix(a, "ssm:") {
				t.Errorf("https off grants %s in %s", a, s.Sid)
			}
		}
		if s.Sid == "AnswerACMEChallengesOnly" {
			t.Errorf("https off grants the challenge records: %+v", s)
		}
	}
}
