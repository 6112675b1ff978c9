package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// Destroy removes everything of a site, so its owner stops paying with one
// command: the record the tool wrote first (no reader is sent on to an
// address about to be released), then the instances, the Elastic IPs, the
// AMIs and their snapshots, the security group, with https the TLS state in
// Parameter Store (the ACME account key, the chain, the certificate's
// private key) and any _acme-challenge TXT record a killed Cert run left,
// and last the deploy lease.
// A plan is printed either way; only apply carries it out, holding the
// lease, and then checks that nothing tagged with the site is left.

// DestroyPlan is everything of a site.
type DestroyPlan struct {
	Site      string
	Domain    string
	Zone      Zone
	Record    *Record // the record the tool wrote; nil when none
	Foreign   *Record // a record at the domain the tool did not write: left alone
	Lease     *Holder // who holds the lease as planned (apply holds it itself)
	Instances []Instance
	Addresses []Address
	AMIs      []AMI
	Snapshots []Snapshot
	Groups    []string // security group ids
	// With https: the site's TLS parameters that exist (full names), and
	// the challenge record sets left in the zone, exactly as read.
	Parameters []string
	Challenges []r53types.ResourceRecordSet
}

// Empty reports a site with nothing left.
func (p DestroyPlan) Empty() bool {
	return p.Record == nil && len(p.Instances) == 0 && len(p.Addresses) == 0 && len(p.AMIs) == 0 && len(p.Snapshots) == 0 && len(p.Groups) == 0 &&
		len(p.Parameters) == 0 && len(p.Challenges) == 0
}

// Print writes the plan for people.
func (p DestroyPlan) Print(w io.Writer) {
	if p.Record != nil {
		fmt.Fprintf(w, "delete record   %s %s → %s (written by the tool)\n", p.Record.Name, p.Record.Type, p.Record.Target)
	}
	if p.Foreign != nil {
		fmt.Fprintf(w, "leave record    %s %s → %s (not the site's address or instance: not the tool's)\n", p.Foreign.Name, p.Foreign.Type, p.Foreign.Target)
	}
	for _, in := range p.Instances {
		fmt.Fprintf(w, "terminate       %s  %s  %s  build %s\n", in.ID, in.State, orNone(in.Role), orNone(in.BuildID))
	}
	for _, a := range p.Addresses {
		fmt.Fprintf(w, "release address %s (%s)\n", a.PublicIP, a.AllocationID)
	}
	for _, a := range p.AMIs {
		fmt.Fprintf(w, "deregister      %s  build %s; delete snapshot(s) %s\n", a.ID, orNone(a.BuildID), strings.Join(a.SnapshotIDs, ", "))
	}
	for _, sn := range p.Snapshots {
		fmt.Fprintf(w, "delete snapshot %s  %s\n", sn.ID, sn.State)
	}
	for _, g := range p.Groups {
		fmt.Fprintf(w, "delete group    %s (%s)\n", g, SecurityGroupName(p.Site))
	}
	for _, n := range p.Parameters {
		fmt.Fprintf(w, "delete parameter %s (TLS state of `mage cert`)\n", n)
	}
	for _, rr := range p.Challenges {
		fmt.Fprintf(w, "delete record   %s TXT (an ACME challenge a Cert run left)\n", aws.ToString(rr.Name))
	}
	if p.Lease != nil {
		fmt.Fprintf(w, "lease           %s is held by %s\n", LeaseName(p.Domain), *p.Lease)
	}
	if p.Empty() {
		fmt.Fprintf(w, "nothing of site %s exists\n", p.Site)
	}
}

// SiteGroups lists the ids of the security groups tagged with the site.
func SiteGroups(ctx context.Context, api ec2.DescribeSecurityGroupsAPIClient, site string) ([]string, error) {
	var ids []string
	p := ec2.NewDescribeSecurityGroupsPaginator(api, &ec2.DescribeSecurityGroupsInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + TagSite), Values: []string{site}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the security groups of site %s: %w; check the ec2:DescribeSecurityGroups permission", site, err)
		}
		for _, g := range page.SecurityGroups {
			if tagValues(g.Tags)[TagSite] == site { // a filter an endpoint ignores must not hand back another group
				ids = append(ids, aws.ToString(g.GroupId))
			}
		}
	}
	return ids, nil
}

// planDestroy reads everything of the site.
func (s *client) planDestroy(ctx context.Context) (DestroyPlan, error) {
	st, err := s.inspect(ctx)
	if err != nil {
		return DestroyPlan{}, err
	}
	p := DestroyPlan{Site: s.cfg.Site, Domain: s.cfg.Domain, Zone: st.Zone, Lease: st.Lease, Instances: st.Instances, AMIs: st.AMIs}
	addrs, err := SiteAddresses(ctx, s.ec2, s.cfg.Site)
	if err != nil {
		return DestroyPlan{}, err
	}
	p.Addresses = addrs
	used := map[string]bool{}
	for _, a := range st.AMIs {
		for _, id := range a.SnapshotIDs {
			used[id] = true
		}
	}
	for _, sn := range st.Snapshots {
		if !used[sn.ID] {
			p.Snapshots = append(p.Snapshots, sn)
		}
	}
	if p.Groups, err = SiteGroups(ctx, s.ec2, s.cfg.Site); err != nil {
		return DestroyPlan{}, err
	}
	if s.cfg.HTTPS {
		if p.Parameters, err = StoredTLSParameters(ctx, s.ssm, s.cfg.Site); err != nil {
			return DestroyPlan{}, err
		}
		if p.Challenges, err = ChallengeRecords(ctx, s.r53, st.Zone, s.cfg.Names()); err != nil {
			return DestroyPlan{}, err
		}
	}
	if st.Record.Type != "" {
		rec := st.Record
		ours := false
		for _, a := range addrs {
			ours = ours || rec.Type == "A" && rec.Target == a.PublicIP
		}
		for _, in := range st.Instances {
			ours = ours || rec.Sends(in)
		}
		if ours {
			p.Record = &rec
		} else {
			p.Foreign = &rec
		}
	}
	return p, nil
}

// Destroy prints what of the site exists and, with apply, removes it all
// holding the site's deploy lease, then checks nothing tagged with the site
// is left. Without a domain there is no record or lease to remove, and the
// run cannot be guarded: destroy needs deploy.domain.
func Destroy(ctx context.Context, opts Options, w io.Writer, apply bool) (*DestroyPlan, error) {
	s, err := connect(ctx, opts, "destroy")
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Require("destroy", "domain"); err != nil {
		return nil, err
	}
	if !apply {
		p, err := s.planDestroy(ctx)
		if err != nil {
			return nil, fmt.Errorf("destroy: %w", err)
		}
		p.Print(w)
		if !p.Empty() {
			fmt.Fprintln(w, "(a plan only: run again with APPLY=1 to remove all of it; it cannot be undone)")
		}
		return &p, nil
	}
	var p DestroyPlan
	err = s.withLease(ctx, opts, "destroy", func(ctx context.Context, zone Zone) error {
		var err error
		if p, err = s.planDestroy(ctx); err != nil {
			return err
		}
		p.Lease = nil // this run's own, deleted last
		p.Print(w)
		return s.destroy(ctx, p)
	})
	if err != nil {
		return &p, fmt.Errorf("destroy: %w; run `APPLY=1 mage destroy` again (it plans from what is left)", err)
	}
	left, err := s.planDestroy(ctx)
	if err != nil {
		return &p, fmt.Errorf("destroy: checking what is left: %w", err)
	}
	if !left.Empty() || left.Lease != nil {
		var b strings.Builder
		left.Print(&b)
		return &p, fmt.Errorf("destroy: after removing everything, this is left of site %s:\n%s", s.cfg.Site, b.String())
	}
	gone := "its record and deploy lease are gone"
	if s.cfg.HTTPS {
		gone = "its record, TLS parameters, challenge records and deploy lease are gone"
	}
	fmt.Fprintf(w, "nothing tagged with site %s is left, and %s\n", s.cfg.Site, gone)
	return &p, nil
}

func (s *client) destroy(ctx context.Context, p DestroyPlan) error {
	if p.Record != nil {
		out, err := ChangeRecordSets(ctx, s.r53, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(p.Zone.ID),
			ChangeBatch: &r53types.ChangeBatch{Comment: aws.String("blog " + s.cfg.Site + ": destroyed"),
				Changes: []r53types.Change{{Action: r53types.ChangeActionDelete, ResourceRecordSet: p.Record.RecordSet()}}},
		}, s.clock)
		if err != nil {
			return fmt.Errorf("deleting the record %s: %w; check the route53:ChangeResourceRecordSets permission", p.Record.Name, err)
		}
		if err := WaitInsync(ctx, s.r53, aws.ToString(out.ChangeInfo.Id), s.clock, s.opts.WaitDelay); err != nil {
			return fmt.Errorf("deleting the record %s: %w", p.Record.Name, err)
		}
		s.log.Infof("deleted the record %s", p.Record.Name)
	}
	for _, a := range p.Addresses {
		if a.AssociationID == "" {
			continue
		}
		if _, err := s.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(a.AssociationID)}); err != nil && !HasCode(err, "InvalidAssociationID.NotFound") {
			return fmt.Errorf("disassociating address %s from %s: %w; check the ec2:DisassociateAddress permission", a.PublicIP, a.InstanceID, err)
		}
	}
	if len(p.Instances) > 0 {
		var ids []string
		for _, in := range p.Instances {
			ids = append(ids, in.ID)
		}
		if _, err := s.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
			return fmt.Errorf("terminating %s: %w; check the ec2:TerminateInstances permission", strings.Join(ids, ", "), err)
		}
		if err := s.waitTerminated(ctx, ids); err != nil {
			return err
		}
		s.log.Infof("terminated %s", strings.Join(ids, ", "))
	}
	for _, a := range p.Addresses {
		if _, err := s.ec2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: aws.String(a.AllocationID)}); err != nil && !HasCode(err, "InvalidAllocationID.NotFound") {
			return fmt.Errorf("releasing address %s: %w; check the ec2:ReleaseAddress permission", a.PublicIP, err)
		}
		s.log.Infof("released address %s", a.PublicIP)
	}
	var errs []error
	for _, a := range p.AMIs {
		if _, err := s.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(a.ID)}); err != nil && !HasCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Unavailable") {
			errs = append(errs, fmt.Errorf("deregistering %s: %w", a.ID, err))
			continue
		}
		for _, snap := range a.SnapshotIDs {
			if err := s.deleteSnapshot(ctx, snap); err != nil {
				errs = append(errs, fmt.Errorf("deleting snapshot %s: %w", snap, err))
			}
		}
	}
	for _, sn := range p.Snapshots {
		if err := s.deleteSnapshot(ctx, sn.ID); err != nil {
			errs = append(errs, fmt.Errorf("deleting snapshot %s: %w", sn.ID, err))
		}
	}
	for _, g := range p.Groups {
		if err := s.deleteGroup(ctx, g); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.deleteTLS(ctx, p); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteTLS removes the site's TLS parameters (one DeleteParameters: at
// most 10 names a call, and a site has three) and the challenge records a
// killed Cert run left (one batch; the deletion need not be INSYNC for
// anything after it, and the check that follows reads the zone again).
func (s *client) deleteTLS(ctx context.Context, p DestroyPlan) error {
	var errs []error
	if len(p.Parameters) > 0 {
		out, err := s.ssm.DeleteParameters(ctx, &ssm.DeleteParametersInput{Names: p.Parameters})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("deleting %s from Parameter Store: %w; check the ssm:DeleteParameters permission (`mage policy`)", strings.Join(p.Parameters, ", "), err))
		default:
			// InvalidParameters are the ones already gone: nothing to do.
			if len(out.DeletedParameters) > 0 {
				s.log.Infof("deleted the TLS parameters %s", strings.Join(out.DeletedParameters, ", "))
			}
		}
	}
	if len(p.Challenges) > 0 {
		var changes []r53types.Change
		var names []string
		for i := range p.Challenges {
			changes = append(changes, r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: &p.Challenges[i]})
			names = append(names, aws.ToString(p.Challenges[i].Name))
		}
		_, err := ChangeRecordSets(ctx, s.r53, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(p.Zone.ID),
			ChangeBatch:  &r53types.ChangeBatch{Comment: aws.String("blog " + s.cfg.Site + ": destroyed (ACME challenges)"), Changes: changes},
		}, s.clock)
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting the challenge records %s: %w; check the route53:ChangeResourceRecordSets permission (`mage policy`)", strings.Join(names, ", "), err))
		} else {
			s.log.Infof("deleted the challenge records %s", strings.Join(names, ", "))
		}
	}
	return errors.Join(errs...)
}

// waitTerminated waits until every instance of ids is terminated: the
// security group cannot be deleted before.
func (s *client) waitTerminated(ctx context.Context, ids []string) error {
	pace := InstancesTerminated.Scaled(s.opts.WaitDelay)
	var left []string
	err := pace.Wait(ctx, s.clock, func(ctx context.Context) (bool, error) {
		left = left[:0]
		for _, id := range ids {
			in, found, err := DescribeInstance(ctx, s.ec2, id)
			if err != nil {
				return false, err
			}
			if found && in.State != string(types.InstanceStateNameTerminated) {
				left = append(left, id+" ("+in.State+")")
			}
		}
		return len(left) == 0, nil
	})
	if errors.Is(err, ErrWaitTimeout) {
		return fmt.Errorf("%s not terminated after %s; look at them in the EC2 console, then run `APPLY=1 mage destroy` again: %w", strings.Join(left, ", "), pace.Max, err)
	}
	if err != nil {
		return fmt.Errorf("waiting for %s to terminate: %w", strings.Join(ids, ", "), err)
	}
	return nil
}

// deleteGroup deletes a security group, waiting out the terminated
// instances EC2 may still count in it.
func (s *client) deleteGroup(ctx context.Context, id string) error {
	var last error
	err := GroupInUse.AtOnce().Wait(ctx, s.clock, func(ctx context.Context) (bool, error) {
		_, last = s.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
		switch {
		case last == nil, HasCode(last, "InvalidGroup.NotFound"):
			return true, nil
		case HasCode(last, "DependencyViolation"):
			return false, nil
		}
		return false, last
	})
	if errors.Is(err, ErrWaitTimeout) {
		err = last
	}
	if err != nil {
		return fmt.Errorf("deleting security group %s: %w; check the ec2:DeleteSecurityGroup permission, or what else uses the group", id, err)
	}
	s.log.Infof("deleted security group %s", id)
	return nil
}

// Unlock breaks the site's deploy lease (`mage unlock`): for a run that
// died holding it, on another machine, before it expired.
func Unlock(ctx context.Context, opts Options, w io.Writer) error {
	s, err := connect(ctx, opts, "unlock")
	if err != nil {
		return err
	}
	if err := s.cfg.Require("unlock", "domain"); err != nil {
		return err
	}
	zone, err := FindZone(ctx, s.r53, s.cfg.Domain, s.cfg.HostedZoneID)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	h, found, err := BreakLease(ctx, s.r53, zone, s.cfg.Domain)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	if !found {
		fmt.Fprintf(w, "site %s has no deploy lease: nothing to unlock\n", s.cfg.Site)
		return nil
	}
	fmt.Fprintf(w, "broke the deploy lease of site %s held by %s\n", s.cfg.Site, h)
	return nil
}
