// Package policy generates the least-privilege IAM policy of the role that
// deploys the blog: exactly the API actions the pipeline calls, each scoped to
// the resource ARNs and tag conditions AWS supports for it.
//
// The policy comes from one table, Table: action → resources → conditions →
// the code paths that call it. A test in magefiles/e2e runs the deploy,
// rollback, status, prune and preflight flows (failure paths included)
// against the emulator, records every action and compares the set with
// Build's, both ways: a call the table lacks or a grant no code makes fails it.
//
// Sources for the scoping: the Service Authorization Reference pages for
// Amazon EC2, Amazon Elastic Block Store (ebs:) and Amazon Route 53, and
// "Control access to EBS direct APIs using IAM" in the EBS user guide.
package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/unikernel-blog/blog/magefiles/fleet"
)

// Version is the IAM policy language version.
const Version = "2012-10-17"

// Params are what the policy is scoped to. Empty values widen to "*".
type Params struct {
	Partition string // "aws" unless given
	Region    string
	Account   string
	Site      string // deploy.site: the value of fleet.TagSite
	Domain    string // deploy.domain: the one record Swap may change
	ZoneID    string // the hosted zone holding Domain
	ZoneName  string // its name with the trailing dot, when known: tells apex (A) from CNAME
	// ZoneConfigured is deploy.hosted_zone_id set: the code reads that zone
	// (route53:GetHostedZone) instead of listing the account's zones.
	ZoneConfigured bool
	SubnetID       string // deploy.subnet_id: Launch reads it (ec2:DescribeSubnets) and runs there
	// HTTPS is deploy.https: the Cert step keeps its state in Parameter
	// Store and answers DNS-01 challenges for Names (domain and aliases).
	HTTPS bool
	Names []string
}

// Grant is one row of the table: actions allowed on resources under conditions.
type Grant struct {
	Sid      string
	Actions  []string
	Resource func(p Params) []string
	// Condition is the IAM Condition block; nil for none.
	Condition func(p Params) map[string]map[string]any
	// When limits the grant to some configurations; nil means always.
	When func(p Params) bool
	// CalledBy names the code paths that make the calls: the reason the
	// grant exists, and where to look when it changes.
	CalledBy []string
	// NoPermission marks a call AWS authorizes without any policy
	// (sts:GetCallerIdentity): listed so the comparison knows it, never printed.
	NoPermission bool
}

// Statement is one statement of the printed policy.
type Statement struct {
	Sid       string                    `json:"Sid"`
	Effect    string                    `json:"Effect"`
	Action    []string                  `json:"Action"`
	Resource  []string                  `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// Document is an IAM policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

func (p Params) part() string   { return or(p.Partition, "aws") }
func (p Params) region() string { return or(p.Region, "*") }
func (p Params) account() string {
	return or(p.Account, "*")
}

// ec2ARN is an EC2 resource ARN in the account; images and snapshots have
// no account field (see ec2Public).
func (p Params) ec2ARN(kind, id string) string {
	return fmt.Sprintf("arn:%s:ec2:%s:%s:%s/%s", p.part(), p.region(), p.account(), kind, id)
}

// ec2Public is an image or snapshot ARN: EC2 writes them without the account.
func (p Params) ec2Public(kind string) string {
	return fmt.Sprintf("arn:%s:ec2:%s::%s/*", p.part(), p.region(), kind)
}

// ssmARN is the site's TLS parameters: /blog/<site>/tls/*.
func (p Params) ssmARN() string {
	return fmt.Sprintf("arn:%s:ssm:%s:%s:parameter/blog/%s/tls/*", p.part(), p.region(), p.account(), or(p.Site, "*"))
}

// challengeNames are the TXT records DNS-01 writes: _acme-challenge.<name>.
func challengeNames(p Params) []string {
	names := p.Names
	if len(names) == 0 {
		names = []string{p.Domain}
	}
	var out []string
	for _, n := range names {
		out = append(out, "_acme-challenge."+strings.TrimSuffix(strings.ToLower(n), "."))
	}
	return out
}

func (p Params) zoneARN() string {
	return fmt.Sprintf("arn:%s:route53:::hostedzone/%s", p.part(), or(p.ZoneID, "*"))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// site is the condition "the resource carries this site's tag".
func site(p Params) map[string]map[string]any {
	return map[string]map[string]any{"StringEquals": {"aws:ResourceTag/" + fleet.TagSite: p.Site}}
}

// requestSite is the condition "the request tags what it creates with this site".
func requestSite(p Params) map[string]map[string]any {
	return map[string]map[string]any{"StringEquals": {"aws:RequestTag/" + fleet.TagSite: p.Site}}
}

func list(arns ...string) func(Params) []string {
	return func(Params) []string { return arns }
}

// recordTypes is what the tool changes at the domain: the A record to the
// site's address, and, below the zone apex, the CNAME the DNS-swap version
// wrote there, which the first deploy replaces; A and CNAME when the zone is
// not known.
func recordTypes(p Params) []string {
	if p.ZoneName != "" && strings.TrimSuffix(strings.ToLower(p.Domain), ".")+"." == strings.ToLower(p.ZoneName) {
		return []string{"A"}
	}
	return []string{"A", "CNAME"}
}

// normalized is a record name as route53:ChangeResourceRecordSetsNormalizedRecordNames holds it.
func normalized(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// Table is every call the pipeline makes, and what it may touch.
var Table = []Grant{
	{
		Sid:      "Describe",
		Actions:  []string{"ec2:DescribeAddresses", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshots"},
		Resource: list("*"), // EC2's Describe calls support no resource-level permissions
		CalledBy: []string{
			"bake: findImage, imageNamed, the snapshot and image waiters, deleteOrphans",
			"launch: target, SiteInstances, SiteAddresses, findGroup, the running waiter",
			"swap: Swap, Retire (the address read back, TerminateIdle); rollback; fleet: Status, Prune, Destroy (Inspect)",
			"preflight: the DryRun checks",
		},
	},
	{
		Sid:      "DescribeSubnet",
		Actions:  []string{"ec2:DescribeSubnets"},
		Resource: list("*"),
		When:     func(p Params) bool { return p.SubnetID != "" },
		CalledBy: []string{"launch: securityGroup (the subnet's VPC), with deploy.subnet_id"},
	},
	{
		Sid:       "StartSnapshotTagged",
		Actions:   []string{"ebs:StartSnapshot"},
		Resource:  func(p Params) []string { return []string{p.ec2Public("snapshot")} },
		Condition: requestSite,
		CalledBy:  []string{"bake: startSnapshot (EBS direct API, tagged at the start)"},
	},
	{
		// StartSnapshot's Tags are authorized as ec2:CreateTags on the new
		// snapshot (the Service Authorization Reference lists it as
		// StartSnapshot's dependent action). AWS documents no ec2:CreateAction
		// value for it, and its own example ("Control access to EBS direct
		// APIs using IAM") grants ec2:CreateTags on snapshots unconditioned:
		// so does this. README: "Set up AWS once" says what that allows.
		Sid:      "TagSnapshotsAtStartSnapshot",
		Actions:  []string{"ec2:CreateTags"},
		Resource: func(p Params) []string { return []string{p.ec2Public("snapshot")} },
		CalledBy: []string{"bake: startSnapshot (the Tags of StartSnapshot)"},
	},
	{
		Sid:       "WriteOwnSnapshot",
		Actions:   []string{"ebs:PutSnapshotBlock", "ebs:CompleteSnapshot"},
		Resource:  func(p Params) []string { return []string{p.ec2Public("snapshot")} },
		Condition: site,
		CalledBy:  []string{"bake: upload, completeSnapshot"},
	},
	{
		Sid:       "RegisterImageTagged",
		Actions:   []string{"ec2:RegisterImage"},
		Resource:  func(p Params) []string { return []string{p.ec2Public("image")} },
		Condition: requestSite,
		CalledBy:  []string{"bake: register (the AMI, tagged at creation)"},
	},
	{
		Sid:       "RegisterImageFromOwnSnapshot",
		Actions:   []string{"ec2:RegisterImage"},
		Resource:  func(p Params) []string { return []string{p.ec2Public("snapshot")} },
		Condition: site,
		CalledBy:  []string{"bake: register (the snapshot it is made from)"},
	},
	{
		Sid:       "RemoveOwnImagesAndSnapshots",
		Actions:   []string{"ec2:DeregisterImage", "ec2:DeleteSnapshot"},
		Resource:  func(p Params) []string { return []string{p.ec2Public("image"), p.ec2Public("snapshot")} },
		Condition: site,
		CalledBy: []string{
			"bake: undo after an error or Ctrl-C (the partial snapshot, the AMI), deleteOrphans, an adopted AMI's spare snapshot",
			"fleet: Prune (old AMIs, their snapshots, orphan snapshots), Destroy",
		},
	},
	{
		Sid:     "RunInstancesTagged",
		Actions: []string{"ec2:RunInstances"},
		Resource: func(p Params) []string {
			return []string{p.ec2ARN("instance", "*"), p.ec2ARN("volume", "*"), p.ec2ARN("network-interface", "*")}
		},
		Condition: requestSite,
		CalledBy:  []string{"launch: run (instance, volume and network interface tagged at creation)"},
	},
	{
		Sid:       "RunInstancesFromOwnImageAndGroup",
		Actions:   []string{"ec2:RunInstances"},
		Resource:  func(p Params) []string { return []string{p.ec2Public("image"), p.ec2ARN("security-group", "*")} },
		Condition: site,
		CalledBy:  []string{"launch: run (the site's AMI, the site's security group)"},
	},
	{
		Sid:      "RunInstancesSubnet",
		Actions:  []string{"ec2:RunInstances"},
		Resource: func(p Params) []string { return []string{p.ec2ARN("subnet", or(p.SubnetID, "*"))} },
		CalledBy: []string{"launch: run (deploy.subnet_id, else the default VPC's subnet)"},
	},
	{
		Sid:       "CreateSecurityGroupTagged",
		Actions:   []string{"ec2:CreateSecurityGroup"},
		Resource:  func(p Params) []string { return []string{p.ec2ARN("security-group", "*")} },
		Condition: requestSite,
		CalledBy:  []string{"launch: securityGroup (created tagged when missing)"},
	},
	{
		Sid:      "CreateSecurityGroupInVPC",
		Actions:  []string{"ec2:CreateSecurityGroup"},
		Resource: func(p Params) []string { return []string{p.ec2ARN("vpc", "*")} },
		CalledBy: []string{"launch: securityGroup (the VPC it is created in)"},
	},
	{
		Sid:       "OwnSecurityGroup",
		Actions:   []string{"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"},
		Resource:  func(p Params) []string { return []string{p.ec2ARN("security-group", "*")} },
		Condition: site,
		CalledBy:  []string{"launch: ensureRules (TCP 80, and 443 with https; extra rules revoked); fleet: Destroy (the group)"},
	},
	{
		Sid:       "OwnInstances",
		Actions:   []string{"ec2:TerminateInstances", "ec2:GetConsoleOutput"},
		Resource:  func(p Params) []string { return []string{p.ec2ARN("instance", "*")} },
		Condition: site,
		CalledBy: []string{
			"launch: a failed health gate (console output, then terminate), undo on error or Ctrl-C",
			"swap: sweep, Retire, the candidate's undo (TerminateIdle); fleet: Prune (strays), Destroy",
		},
	},
	{
		Sid:       "AllocateAddressTagged",
		Actions:   []string{"ec2:AllocateAddress"},
		Resource:  func(p Params) []string { return []string{p.ec2ARN("elastic-ip", "*")} },
		Condition: requestSite,
		CalledBy:  []string{"swap: ensureAddress (the site's one Elastic IP, tagged at creation)"},
	},
	{
		Sid:       "OwnAddress",
		Actions:   []string{"ec2:AssociateAddress", "ec2:DisassociateAddress", "ec2:ReleaseAddress"},
		Resource:  func(p Params) []string { return []string{p.ec2ARN("elastic-ip", "*")} },
		Condition: site,
		CalledBy:  []string{"swap: associate (the cutover), releaseTwin; fleet: Destroy"},
	},
	{
		Sid:     "AssociateWithOwnInstance",
		Actions: []string{"ec2:AssociateAddress"},
		Resource: func(p Params) []string {
			return []string{p.ec2ARN("instance", "*"), p.ec2ARN("network-interface", "*")}
		},
		Condition: site,
		CalledBy:  []string{"swap: associate (the instance the address moves to, and its interface)"},
	},
	{
		Sid:     "TagOnlyAtCreation",
		Actions: []string{"ec2:CreateTags"},
		Resource: func(p Params) []string {
			return []string{p.ec2ARN("instance", "*"), p.ec2ARN("volume", "*"), p.ec2ARN("network-interface", "*"), p.ec2ARN("security-group", "*"),
				p.ec2ARN("elastic-ip", "*"), p.ec2Public("image")}
		},
		Condition: func(Params) map[string]map[string]any {
			return map[string]map[string]any{"StringEquals": {"ec2:CreateAction": []string{"RunInstances", "RegisterImage", "CreateSecurityGroup", "AllocateAddress"}}}
		},
		CalledBy: []string{"launch: run, securityGroup; bake: register; swap: ensureAddress (TagSpecifications)"},
	},
	{
		Sid:      "RoleTagsOnOwnInstances",
		Actions:  []string{"ec2:CreateTags"},
		Resource: func(p Params) []string { return []string{p.ec2ARN("instance", "*")} },
		Condition: func(p Params) map[string]map[string]any {
			return map[string]map[string]any{
				"StringEquals":              {"aws:ResourceTag/" + fleet.TagSite: p.Site},
				"ForAllValues:StringEquals": {"aws:TagKeys": []string{fleet.TagRole, fleet.TagRetireAfter}},
			}
		},
		CalledBy: []string{"swap: tag (live before the address moves, draining with the end of the grace after)"},
	},
	{
		Sid:      "LiveTagsOnOwnImages",
		Actions:  []string{"ec2:CreateTags"},
		Resource: func(p Params) []string { return []string{p.ec2Public("image")} },
		Condition: func(p Params) map[string]map[string]any {
			return map[string]map[string]any{
				"StringEquals":              {"aws:ResourceTag/" + fleet.TagSite: p.Site},
				"ForAllValues:StringEquals": {"aws:TagKeys": []string{fleet.TagLiveSince, fleet.TagLiveUntil, fleet.TagGate}},
			}
		},
		CalledBy: []string{"swap: recordLive (when a build went live and stopped being live); launch: markGateFailed"},
	},
	{
		Sid:      "FindZoneByName",
		Actions:  []string{"route53:ListHostedZones"},
		Resource: list("*"), // a listing has no resource
		When:     func(p Params) bool { return !p.ZoneConfigured },
		CalledBy: []string{"fleet: FindZone without deploy.hosted_zone_id (the lease, Swap, Rollback, Status, Prune, Destroy, preflight)"},
	},
	{
		Sid:      "ReadConfiguredZone",
		Actions:  []string{"route53:GetHostedZone"},
		Resource: func(p Params) []string { return []string{p.zoneARN()} },
		When:     func(p Params) bool { return p.ZoneConfigured },
		CalledBy: []string{"fleet: FindZone with deploy.hosted_zone_id"},
	},
	{
		Sid:      "ReadRecords",
		Actions:  []string{"route53:ListResourceRecordSets"},
		Resource: func(p Params) []string { return []string{p.zoneARN()} },
		CalledBy: []string{"fleet: ReadRecord, the lease (Swap, Rollback, Status, Prune, Destroy, preflight)"},
	},
	{
		Sid:      "TheBlogRecordOnly",
		Actions:  []string{"route53:ChangeResourceRecordSets"},
		Resource: func(p Params) []string { return []string{p.zoneARN()} },
		Condition: func(p Params) map[string]map[string]any {
			return map[string]map[string]any{"ForAllValues:StringEquals": {
				"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{normalized(p.Domain)},
				"route53:ChangeResourceRecordSetsRecordTypes":           recordTypes(p),
				"route53:ChangeResourceRecordSetsActions":               []string{"CREATE", "DELETE"},
			}}
		},
		CalledBy: []string{"swap: writeRecord (the record as read deleted and the A record to the address created, one batch); fleet: Destroy"},
	},
	{
		Sid:      "TheDeployLeaseOnly",
		Actions:  []string{"route53:ChangeResourceRecordSets"},
		Resource: func(p Params) []string { return []string{p.zoneARN()} },
		Condition: func(p Params) map[string]map[string]any {
			return map[string]map[string]any{"ForAllValues:StringEquals": {
				"route53:ChangeResourceRecordSetsNormalizedRecordNames": []string{normalized(fleet.LeaseName(p.Domain))},
				"route53:ChangeResourceRecordSetsRecordTypes":           []string{"TXT"},
				"route53:ChangeResourceRecordSetsActions":               []string{"CREATE", "DELETE"},
			}}
		},
		CalledBy: []string{"fleet: AcquireLease, renew, Release, BreakLease (the TXT record of the deploy lease)"},
	},
	{
		Sid:      "CertificateParameters",
		Actions:  []string{"ssm:GetParameters", "ssm:PutParameter"},
		Resource: func(p Params) []string { return []string{p.ssmARN()} },
		When:     func(p Params) bool { return p.HTTPS },
		// SecureStrings under the AWS-managed key alias/aws/ssm need no kms:
		// grant: its key policy allows use through SSM by the account.
		CalledBy: []string{"cert: load (the account key, chain and key, one GetParameters), put (a new account key; a renewed chain and key); fleet: Destroy (which of them exist, without decryption)"},
	},
	{
		Sid:      "DestroyCertificateParameters",
		Actions:  []string{"ssm:DeleteParameters"},
		Resource: func(p Params) []string { return []string{p.ssmARN()} },
		When:     func(p Params) bool { return p.HTTPS },
		CalledBy: []string{"fleet: Destroy (the account key, chain and key, one DeleteParameters)"},
	},
	{
		Sid:      "AnswerACMEChallengesOnly",
		Actions:  []string{"route53:ChangeResourceRecordSets"},
		Resource: func(p Params) []string { return []string{p.zoneARN()} },
		When:     func(p Params) bool { return p.HTTPS },
		Condition: func(p Params) map[string]map[string]any {
			return map[string]map[string]any{"ForAllValues:StringEquals": {
				"route53:ChangeResourceRecordSetsNormalizedRecordNames": challengeNames(p),
				"route53:ChangeResourceRecordSetsRecordTypes":           []string{"TXT"},
				"route53:ChangeResourceRecordSetsActions":               []string{"UPSERT", "DELETE"},
			}}
		},
		CalledBy: []string{"cert: lego's route53 provider (UPSERT to present, DELETE or UPSERT to clean up), sweep (DELETE of leftovers); fleet: Destroy (DELETE of leftovers)"},
	},
	{
		Sid:      "WaitForINSYNC",
		Actions:  []string{"route53:GetChange"},
		Resource: func(p Params) []string { return []string{fmt.Sprintf("arn:%s:route53:::change/*", p.part())} },
		CalledBy: []string{"fleet: WaitInsync (swap: writeRecord; Destroy)", "cert: lego waits for its challenge records"},
	},
	{
		Sid:          "WhoAmI",
		Actions:      []string{"sts:GetCallerIdentity"},
		NoPermission: true, // STS answers it for any credentials; no policy can deny it
		CalledBy:     []string{"preflight: credentials; mage policy: the account id"},
	},
}

// Build returns the policy for p: the table's grants that apply, one
// statement each, in table order.
func Build(p Params) Document {
	d := Document{Version: Version}
	for _, g := range Table {
		if g.NoPermission || (g.When != nil && !g.When(p)) {
			continue
		}
		s := Statement{Sid: g.Sid, Effect: "Allow", Action: slices.Clone(g.Actions), Resource: g.Resource(p)}
		if g.Condition != nil {
			s.Condition = g.Condition(p)
		}
		d.Statement = append(d.Statement, s)
	}
	return d
}

// Actions lists the distinct actions the document allows, sorted.
func (d Document) Actions() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range d.Statement {
		for _, a := range s.Action {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Unpermissioned lists the actions the code calls that need no permission.
func Unpermissioned() []string {
	var out []string
	for _, g := range Table {
		if g.NoPermission {
			out = append(out, g.Actions...)
		}
	}
	sort.Strings(out)
	return out
}

// JSON is the document as `mage policy` prints it.
func (d Document) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
