package awsmodel

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const ec2NS = "http://ec2.amazonaws.com/doc/2016-11-15/"

func (s *Model) serveEC2(w http.ResponseWriter, r *http.Request, op string, body []byte, form url.Values) {
	if form.Get("DryRun") == "true" {
		// A dry run checks the request as the call would, then answers
		// DryRunOperation instead of acting ("Checks whether you have the
		// required permissions for the action, without actually making the
		// request"): a request naming what does not exist fails as the call would
		// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/CommonParameters.html).
		if err := s.dryRunCheck(r.Context(), form); err != nil {
			WriteAPIError(w, "ec2", err.code, err.msg, err.status)
			return
		}
		WriteAPIError(w, "ec2", "DryRunOperation", "Request would have succeeded, but DryRun flag is set.", http.StatusPreconditionFailed)
		return
	}
	var err *ec2Err
	var out any
	switch op {
	case "AllocateAddress":
		out, err = s.allocateAddress(form)
	case "DescribeAddresses":
		out, err = s.describeAddresses(form)
	case "AssociateAddress":
		out, err = s.associateAddress(r.Context(), form)
	case "DisassociateAddress":
		out, err = s.disassociateAddress(form)
	case "ReleaseAddress":
		out, err = s.releaseAddress(form)
	case "TerminateInstances", "StopInstances":
		resp := s.forward(r, body)
		if resp.status == http.StatusOK {
			s.afterStateChange(op, list(form, "InstanceId"))
		}
		resp.write(w)
		return
	case "DeleteSecurityGroup":
		if err := s.groupInUse(form.Get("GroupId")); err != nil {
			WriteAPIError(w, "ec2", err.code, err.msg, err.status)
			return
		}
		s.forward(r, body).write(w)
		return
	case "RegisterImage":
		out, err = s.registerImage(form)
	case "DescribeImages":
		out, err = s.describeImages(form)
	case "DeregisterImage":
		out, err = s.deregisterImage(form)
	case "DescribeSnapshots":
		out, err = s.describeSnapshots(form)
	case "DeleteSnapshot":
		out, err = s.deleteSnapshot(form)
	case "GetConsoleOutput":
		out, err = s.getConsoleOutput(form)
	case "CreateTags", "DeleteTags":
		out, err = s.tags(r.Context(), op, form)
	case "RunInstances":
		out, err = s.runInstances(r.Context(), form)
	case "DescribeInstances":
		out, err = s.describeInstances(r.Context(), form)
	default:
		s.forward(r, body).write(w)
		return
	}
	if err != nil {
		WriteAPIError(w, "ec2", err.code, err.msg, err.status)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(out)
}

type ec2Err struct {
	code, msg string
	status    int
}

func badRequest(code, format string, args ...any) *ec2Err {
	return &ec2Err{code: code, msg: fmt.Sprintf(format, args...), status: http.StatusBadRequest}
}

// --- Query form parsing ----------------------------------------------------

// list reads prefix.1, prefix.2, … in order.
func list(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// filters reads Filter.N.Name and Filter.N.Value.M.
func filters(form url.Values) map[string][]string {
	out := map[string][]string{}
	for i := 1; ; i++ {
		name := form.Get(fmt.Sprintf("Filter.%d.Name", i))
		if name == "" {
			return out
		}
		out[name] = append(out[name], list(form, fmt.Sprintf("Filter.%d.Value", i))...)
	}
}

// tagSpecs reads the tags of TagSpecification.N entries for resourceType.
func tagSpecs(form url.Values, resourceType string) []Tag {
	var tags []Tag
	for i := 1; ; i++ {
		p := fmt.Sprintf("TagSpecification.%d.", i)
		rt, ok := form[p+"ResourceType"]
		if !ok {
			return tags
		}
		if rt[0] == resourceType {
			tags = append(tags, formTags(form, p+"Tag")...)
		}
	}
}

// formTags reads prefix.N.Key / prefix.N.Value.
func formTags(form url.Values, prefix string) []Tag {
	var tags []Tag
	for i := 1; ; i++ {
		k, ok := form[fmt.Sprintf("%s.%d.Key", prefix, i)]
		if !ok {
			return tags
		}
		tags = append(tags, Tag{Key: k[0], Value: form.Get(fmt.Sprintf("%s.%d.Value", prefix, i))})
	}
}

// matchFilter applies one EC2 filter to a resource; fields maps the plain
// filter names the resource supports to its values. Values may use the * and
// ? wildcards, as in EC2.
func matchFilter(name string, values []string, tags []Tag, fields map[string]string) (bool, *ec2Err) {
	match := func(have string) bool {
		for _, v := range values {
			if ok, _ := path.Match(v, have); ok {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(name, "tag:"):
		key := strings.TrimPrefix(name, "tag:")
		for _, t := range tags {
			if t.Key == key && match(t.Value) {
				return true, nil
			}
		}
		return false, nil
	case name == "tag-key":
		for _, t := range tags {
			if match(t.Key) {
				return true, nil
			}
		}
		return false, nil
	}
	have, ok := fields[name]
	if !ok {
		return false, badRequest("InvalidParameterValue", "The filter '%s' is invalid", name)
	}
	return match(have), nil
}

func matchAll(f map[string][]string, tags []Tag, fields map[string]string) (bool, *ec2Err) {
	for name, values := range f {
		ok, err := matchFilter(name, values, tags, fields)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// ownedBySelf applies Owner.N: the shim's resources all belong to AccountID.
func ownedBySelf(owners []string) bool {
	if len(owners) == 0 {
		return true
	}
	for _, o := range owners {
		if o == "self" || o == AccountID {
			return true
		}
	}
	return false
}

func newID(prefix string) string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])[:17]
}

// --- images ---------------------------------------------------------------

func (s *Model) registerImage(form url.Values) (any, *ec2Err) {
	name := form.Get("Name")
	if form.Get("ImageLocation") != "" {
		return nil, badRequest("InvalidParameterValue", "awsmodel: S3-backed (ImageLocation) images are not emulated")
	}
	if len(name) < 3 || len(name) > 128 {
		return nil, badRequest("InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long, got %q", name)
	}
	img := &Image{
		Name:               name,
		Description:        form.Get("Description"),
		State:              "pending",
		Architecture:       form.Get("Architecture"),
		VirtualizationType: form.Get("VirtualizationType"),
		BootMode:           form.Get("BootMode"),
		EnaSupport:         form.Get("EnaSupport") == "true",
		KernelID:           form.Get("KernelId"),
		RootDeviceName:     form.Get("RootDeviceName"),
		ImdsSupport:        form.Get("ImdsSupport"),
		Tags:               tagSpecs(form, "image"),
		Created:            time.Now().UTC(),
		pendingLeft:        s.pending,
	}
	if img.Architecture == "" {
		img.Architecture = "x86_64"
	}
	if img.VirtualizationType == "" {
		img.VirtualizationType = "paravirtual" // EC2's default
	}
	if img.BootMode != "" && img.VirtualizationType != "hvm" {
		return nil, badRequest("InvalidParameterCombination", "BootMode %s requires hvm virtualization", img.BootMode)
	}
	for i := 1; ; i++ {
		p := fmt.Sprintf("BlockDeviceMapping.%d.", i)
		dev, ok := form[p+"DeviceName"]
		if !ok {
			break
		}
		if dev[0] != img.RootDeviceName {
			continue
		}
		img.SnapshotID = form.Get(p + "Ebs.SnapshotId")
		img.VolumeType = form.Get(p + "Ebs.VolumeType")
		img.DeleteOnTermination = form.Get(p+"Ebs.DeleteOnTermination") == "true"
		img.VolumeSize, _ = strconv.ParseInt(form.Get(p+"Ebs.VolumeSize"), 10, 64)
	}
	if img.SnapshotID == "" {
		return nil, badRequest("InvalidBlockDeviceMapping", "no block device mapping with a snapshot for the root device %q", img.RootDeviceName)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[img.SnapshotID]
	switch {
	case !ok || snap.Deleted:
		return nil, badRequest("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", img.SnapshotID)
	case snap.State != "completed" || snap.pendingLeft > 0:
		return nil, badRequest("IncorrectState", "Snapshot %s is in invalid state - %s", img.SnapshotID, snap.State)
	case img.VolumeSize != 0 && img.VolumeSize < snap.VolumeSize:
		return nil, badRequest("InvalidBlockDeviceMapping", "Volume of size %dGiB is smaller than snapshot '%s', expect size >= %dGiB", img.VolumeSize, img.SnapshotID, snap.VolumeSize)
	}
	if img.VolumeSize == 0 {
		img.VolumeSize = snap.VolumeSize
	}
	for _, other := range s.images {
		if other.Name == name {
			return nil, badRequest("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, other.ID)
		}
	}
	img.ID = newID("ami")
	s.images[img.ID] = img
	s.lag.hide(img.ID, s.lagLooks)
	return registerImageResponse{Xmlns: ec2NS, RequestID: NewRequestID(), ImageID: img.ID}, nil
}

func (s *Model) describeImages(form url.Values) (any, *ec2Err) {
	ids := list(form, "ImageId")
	f := filters(form)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.images[id]; !ok || !s.lag.visible(id) {
			return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
	}
	var items []xmlImage
	for _, img := range s.sortedImages() {
		if len(ids) > 0 && !contains(ids, img.ID) || !ownedBySelf(list(form, "Owner")) {
			continue
		}
		ok, err := matchAll(f, img.Tags, map[string]string{
			"name": img.Name, "state": img.State, "image-id": img.ID, "owner-id": AccountID,
			"architecture": img.Architecture, "virtualization-type": img.VirtualizationType,
			"root-device-type": "ebs", "image-type": "machine",
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if len(ids) == 0 && !s.lag.visible(img.ID) {
			continue
		}
		items = append(items, img.xml())
		// Every look moves a new image towards available, so waiters wait a little.
		if img.State == "pending" {
			if img.pendingLeft--; img.pendingLeft < 0 {
				img.State = "available"
			}
		}
	}
	return describeImagesResponse{Xmlns: ec2NS, RequestID: NewRequestID(), Images: items}, nil
}

func (s *Model) sortedImages() []*Image {
	out := make([]*Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.Before(out[j].Created) || out[i].Created.Equal(out[j].Created) && out[i].ID < out[j].ID
	})
	return out
}

func (s *Model) deregisterImage(form url.Values) (any, *ec2Err) {
	id := form.Get("ImageId")
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[id]
	if !ok {
		return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	delete(s.images, id)
	if form.Get("DeleteAssociatedSnapshots") == "true" {
		if snap, ok := s.snapshots[img.SnapshotID]; ok {
			snap.Deleted = true
		}
	}
	return returnResponse{XMLName: xml.Name{Local: "DeregisterImageResponse"}, Xmlns: ec2NS, RequestID: NewRequestID(), Return: true}, nil
}

// --- snapshots ------------------------------------------------------------

func (s *Model) describeSnapshots(form url.Values) (any, *ec2Err) {
	ids := list(form, "SnapshotId")
	f := filters(form)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if snap, ok := s.snapshots[id]; !ok || snap.Deleted || !s.lag.visible(id) {
			return nil, badRequest("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		}
	}
	sorted := make([]string, 0, len(s.snapshots))
	for id := range s.snapshots {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	var items []xmlSnapshot
	for _, id := range sorted {
		snap := s.snapshots[id]
		if snap.Deleted || len(ids) > 0 && !contains(ids, id) || !ownedBySelf(list(form, "Owner")) {
			continue
		}
		state := snap.State
		if state != "pending" && snap.pendingLeft > 0 {
			state = "pending" // completed or failed, but not shown yet
		}
		ok, err := matchAll(f, snap.Tags, map[string]string{
			"status": state, "snapshot-id": id, "owner-id": AccountID,
			"volume-size": strconv.FormatInt(snap.VolumeSize, 10), "description": snap.Description,
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if len(ids) == 0 && !s.lag.visible(id) {
			continue
		}
		progress := "0%"
		if state == "completed" {
			progress = "100%"
		}
		items = append(items, xmlSnapshot{
			SnapshotID: id, VolumeID: "vol-ffffffff", Status: state, StatusMessage: snap.Message,
			StartTime: time.Now().UTC().Format(time.RFC3339), Progress: progress, OwnerID: AccountID,
			VolumeSize: snap.VolumeSize, Description: snap.Description, TagSet: toXMLTags(snap.Tags),
		})
		if snap.State != "pending" && snap.pendingLeft > 0 {
			snap.pendingLeft--
		}
	}
	return describeSnapshotsResponse{Xmlns: ec2NS, RequestID: NewRequestID(), Snapshots: items}, nil
}

func (s *Model) deleteSnapshot(form url.Values) (any, *ec2Err) {
	id := form.Get("SnapshotId")
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[id]
	if !ok || snap.Deleted {
		return nil, badRequest("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	for _, img := range s.images {
		if img.SnapshotID == id {
			return nil, badRequest("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, img.ID)
		}
	}
	snap.Deleted = true
	return returnResponse{XMLName: xml.Name{Local: "DeleteSnapshotResponse"}, Xmlns: ec2NS, RequestID: NewRequestID(), Return: true}, nil
}

// --- tags, console, instances -----------------------------------------------

// tags handles CreateTags/DeleteTags for images and snapshots and passes
// the other resources on to kumo.
func (s *Model) tags(ctx context.Context, op string, form url.Values) (any, *ec2Err) {
	ids := list(form, "ResourceId")
	tags := formTags(form, "Tag")
	var rest []string
	s.mu.Lock()
	for _, id := range ids {
		var target *[]Tag
		switch {
		case strings.HasPrefix(id, "ami-"):
			if img, ok := s.images[id]; ok {
				target = &img.Tags
			}
		case strings.HasPrefix(id, "snap-"):
			if snap, ok := s.snapshots[id]; ok && !snap.Deleted {
				target = &snap.Tags
			}
		case strings.HasPrefix(id, "eipalloc-"):
			if a, ok := s.addresses[id]; ok {
				target = &a.Tags
			}
		default:
			rest = append(rest, id)
			continue
		}
		if target == nil {
			s.mu.Unlock()
			return nil, badRequest("InvalidID", "The ID '%s' is not valid", id)
		}
		*target = applyTags(op, *target, tags)
	}
	s.mu.Unlock()
	if len(rest) > 0 {
		f := url.Values{"Action": {op}}
		for i, id := range rest {
			f.Set(fmt.Sprintf("ResourceId.%d", i+1), id)
		}
		for i, t := range tags {
			f.Set(fmt.Sprintf("Tag.%d.Key", i+1), t.Key)
			f.Set(fmt.Sprintf("Tag.%d.Value", i+1), t.Value)
		}
		if resp := s.ec2Call(ctx, f); resp.status != http.StatusOK {
			return nil, &ec2Err{code: "InternalError", msg: "awsmodel: kumo " + op + ": " + string(resp.body), status: resp.status}
		}
	}
	return returnResponse{XMLName: xml.Name{Local: op + "Response"}, Xmlns: ec2NS, RequestID: NewRequestID(), Return: true}, nil
}

func applyTags(op string, have, tags []Tag) []Tag {
	out := have[:0:0]
	for _, h := range have {
		drop := false
		for _, t := range tags {
			// CreateTags overwrites a key; DeleteTags removes it (if the value matches, when given).
			if h.Key == t.Key && (op == "CreateTags" || t.Value == "" || t.Value == h.Value) {
				drop = true
			}
		}
		if !drop {
			out = append(out, h)
		}
	}
	if op == "CreateTags" {
		out = append(out, tags...)
	}
	return out
}

// getConsoleOutput answers as EC2 does for the instance's type: on Nitro
// types only Latest=true returns what the console printed last; without it
// the answer is the buffered output, which on Nitro is often empty exactly
// when an instance fails to boot, so the model returns none; Latest on a
// Xen type is refused. EC2 API Reference, GetConsoleOutput ("Latest ...
// Only supported on instances built on the Nitro System"):
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetConsoleOutput.html
func (s *Model) getConsoleOutput(form url.Values) (any, *ec2Err) {
	id := form.Get("InstanceId")
	if id == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter InstanceId")
	}
	latest := form.Get("Latest") == "true"
	s.mu.Lock()
	text, ok := s.console[id]
	n, found := s.nets[id]
	s.mu.Unlock()
	if !found {
		// An instance the account does not have (API_GetConsoleOutput.html;
		// the error code from "Error codes for the Amazon EC2 API":
		// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
		return nil, badRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	itype := n.itype
	nitro := NitroType(itype)
	if latest && !nitro {
		return nil, badRequest("UnsupportedOperation", "The Latest parameter is only supported on instances built on the Nitro System; %s is not", itype)
	}
	out := consoleOutputResponse{Xmlns: ec2NS, RequestID: NewRequestID(), InstanceID: id, Timestamp: time.Now().UTC().Format(time.RFC3339)}
	if ok && (latest || !nitro) {
		out.Output = base64.StdEncoding.EncodeToString([]byte(text))
	}
	return out, nil
}

// xenFamilies are the instance families on the Xen hypervisor (EC2 User
// Guide, "Instances built on the AWS Nitro System" lists the others:
// https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-nitro-instances.html).
var xenFamilies = []string{"c1", "c3", "c4", "cc2", "cr1", "d2", "f1", "g2", "g3", "g3s", "h1", "hs1", "i2", "i3", "m1", "m2", "m3", "m4", "p2", "p3", "r3", "r4", "t1", "t2", "x1", "x1e"}

// NitroType reports an instance type on the Nitro System; "" (unknown) is not.
func NitroType(itype string) bool {
	family, _, ok := strings.Cut(itype, ".")
	return ok && !contains(xenFamilies, family)
}

// groupInUse refuses to delete a security group an instance still uses:
// DependencyViolation, as EC2 answers DeleteSecurityGroup
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html).
func (s *Model) groupInUse(group string) *ec2Err {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range s.nets {
		if contains(n.groups, group) && s.states[id] != "terminated" {
			return badRequest("DependencyViolation", "resource %s has a dependent object (instance %s)", group, id)
		}
	}
	return nil
}

// dryRunCheck fails a dry run that names an AMI, snapshot, instance or
// address the account does not have.
func (s *Model) dryRunCheck(ctx context.Context, form url.Values) *ec2Err {
	ids := append(list(form, "InstanceId"), list(form, "ResourceId")...)
	for _, k := range []string{"ImageId", "SnapshotId", "InstanceId", "AllocationId"} {
		if v := form.Get(k); v != "" {
			ids = append(ids, v)
		}
	}
	for _, id := range ids {
		s.mu.Lock()
		var missing bool
		switch {
		case strings.HasPrefix(id, "ami-"):
			_, ok := s.images[id]
			missing = !ok
		case strings.HasPrefix(id, "snap-"):
			snap, ok := s.snapshots[id]
			missing = !ok || snap.Deleted
		case strings.HasPrefix(id, "eipalloc-"):
			_, ok := s.addresses[id]
			missing = !ok
		}
		s.mu.Unlock()
		if strings.HasPrefix(id, "i-") {
			all, err := s.instances(ctx, url.Values{})
			missing = err == nil && !slices.ContainsFunc(all, func(in xmlInstance) bool { return in.InstanceID == id })
		}
		if missing {
			return badRequest(notFoundCode(id), "The ID '%s' does not exist", id)
		}
	}
	return nil
}

func notFoundCode(id string) string {
	switch {
	case strings.HasPrefix(id, "ami-"):
		return "InvalidAMIID.NotFound"
	case strings.HasPrefix(id, "snap-"):
		return "InvalidSnapshot.NotFound"
	case strings.HasPrefix(id, "eipalloc-"):
		return "InvalidAllocationID.NotFound"
	}
	return "InvalidInstanceID.NotFound"
}

// networkInterface is RunInstances' NetworkInterface.1, as sent.
type networkInterface struct {
	given    bool
	public   string // AssociatePublicIpAddress: "true", "false" or "" (unset)
	subnet   string
	groups   []string
	devIndex string
}

// parseNetworkInterfaces reads RunInstances' one network interface as the
// launch asks for it, with the rules of
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html
// and .../API_InstanceNetworkInterfaceSpecification.html (public address only
// for one interface, the primary at DeviceIndex 0, groups and subnet on the
// interface, not beside it). A second interface is refused outright, stricter
// than AWS: the launch never asks for one.
func parseNetworkInterfaces(form url.Values) (networkInterface, *ec2Err) {
	var ni networkInterface
	for k := range form {
		if strings.HasPrefix(k, "NetworkInterface.") && !strings.HasPrefix(k, "NetworkInterface.1.") {
			return ni, badRequest("InvalidParameterCombination", "The associatePublicIPAddress parameter cannot be specified when launching with multiple network interfaces.")
		}
		if strings.HasPrefix(k, "NetworkInterface.1.") {
			ni.given = true
		}
	}
	if !ni.given {
		return ni, nil
	}
	ni.public = form.Get("NetworkInterface.1.AssociatePublicIpAddress")
	ni.subnet = form.Get("NetworkInterface.1.SubnetId")
	ni.groups = list(form, "NetworkInterface.1.SecurityGroupId")
	ni.devIndex = form.Get("NetworkInterface.1.DeviceIndex")
	switch {
	case ni.devIndex != "0":
		return ni, badRequest("InvalidParameterValue", "the network interface must have DeviceIndex 0 to be the primary one, got %q", ni.devIndex)
	case len(list(form, "SecurityGroupId")) > 0 || len(list(form, "SecurityGroup")) > 0:
		return ni, badRequest("InvalidParameterCombination", "Network interfaces and an instance-level security groups may not be specified on the same request")
	case form.Get("SubnetId") != "":
		return ni, badRequest("InvalidParameterCombination", "Network interfaces and an instance-level subnet ID may not be specified on the same request")
	}
	return ni, nil
}

// mapsPublicIP reports whether a subnet gives new instances a public IPv4
// address: a default subnet ("" here: the default VPC's) does, another only
// with MapPublicIpOnLaunch, which kumo keeps
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceNetworkInterfaceSpecification.html,
// AssociatePublicIpAddress).
func (s *Model) mapsPublicIP(ctx context.Context, subnet string) (bool, *ec2Err) {
	if subnet == "" {
		return true, nil
	}
	resp := s.ec2Call(ctx, url.Values{"Action": {"DescribeSubnets"}, "SubnetId.1": {subnet}})
	if resp.status != http.StatusOK {
		return false, badRequest("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", subnet)
	}
	var out struct {
		Subnets []struct {
			ID  string `xml:"subnetId"`
			Map bool   `xml:"mapPublicIpOnLaunch"`
		} `xml:"subnetSet>item"`
	}
	if err := xml.Unmarshal(resp.body, &out); err != nil || len(out.Subnets) == 0 {
		return false, badRequest("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", subnet)
	}
	return out.Subnets[0].Map, nil
}

func (s *Model) runInstances(ctx context.Context, form url.Values) (any, *ec2Err) {
	ami := form.Get("ImageId")
	s.mu.Lock()
	img, ok := s.images[ami]
	s.mu.Unlock()
	if !ok || img.State != "available" {
		return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist or is not available", ami)
	}
	ni, nerr := parseNetworkInterfaces(form)
	if nerr != nil {
		return nil, nerr
	}
	// Valid values stop | terminate, default stop
	// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html).
	switch b := form.Get("InstanceInitiatedShutdownBehavior"); b {
	case "", "stop", "terminate":
	default:
		return nil, badRequest("InvalidParameterValue", "InstanceInitiatedShutdownBehavior must be stop or terminate, got %q", b)
	}
	tags := tagSpecs(form, "instance")
	token := form.Get("ClientToken")
	if token != "" {
		// A RunInstances and its token lookup are atomic.
		s.runMu.Lock()
		defer s.runMu.Unlock()
		s.mu.Lock()
		ids := s.runTokens[token]
		s.mu.Unlock()
		if len(ids) > 0 {
			f := url.Values{}
			for i, id := range ids {
				f.Set(fmt.Sprintf("InstanceId.%d", i+1), id)
			}
			same, err := s.instances(ctx, f)
			if err != nil {
				return nil, &ec2Err{code: "InternalError", msg: "awsmodel: " + err.Error(), status: 500}
			}
			// The instances as they are now, as DescribeInstances would
			// show them: still pending within the model's pending window.
			s.mu.Lock()
			for i := range same {
				if in := &same[i]; in.State.Name == "running" && s.pendingInstances[in.InstanceID] > 0 {
					in.State.Code, in.State.Name = 0, "pending"
				}
			}
			s.mu.Unlock()
			return runInstancesResponse{Xmlns: ec2NS, RequestID: NewRequestID(), ReservationID: same[0].reservation, OwnerID: AccountID, Instances: same}, nil
		}
	}
	subnet := form.Get("SubnetId")
	groups := list(form, "SecurityGroupId")
	kumoForm := cloneForm(form)
	if ni.given {
		subnet, groups = ni.subnet, ni.groups
		for i, g := range groups {
			kumoForm.Set(fmt.Sprintf("SecurityGroupId.%d", i+1), g)
		}
	}
	public := ni.public == "true"
	if ni.public == "" {
		mapped, err := s.mapsPublicIP(ctx, subnet)
		if err != nil {
			return nil, err
		}
		public = mapped
	}
	resp := s.ec2Call(ctx, kumoForm)
	if resp.status != http.StatusOK {
		return nil, &ec2Err{code: "InternalError", msg: "awsmodel: kumo RunInstances: " + string(resp.body), status: resp.status}
	}
	var out runInstancesResponse
	if err := xml.Unmarshal(resp.body, &out); err != nil {
		return nil, &ec2Err{code: "InternalError", msg: "awsmodel: decoding kumo's RunInstances: " + err.Error(), status: 500}
	}
	if len(tags) > 0 {
		f := url.Values{"Action": {"CreateTags"}}
		for i, in := range out.Instances {
			f.Set(fmt.Sprintf("ResourceId.%d", i+1), in.InstanceID)
		}
		for i, t := range tags {
			f.Set(fmt.Sprintf("Tag.%d.Key", i+1), t.Key)
			f.Set(fmt.Sprintf("Tag.%d.Value", i+1), t.Value)
		}
		if resp := s.ec2Call(ctx, f); resp.status != http.StatusOK {
			return nil, &ec2Err{code: "InternalError", msg: "awsmodel: kumo CreateTags: " + string(resp.body), status: resp.status}
		}
		for i := range out.Instances {
			out.Instances[i].TagSet = toXMLTags(tags)
		}
	}
	s.mu.Lock()
	for i := range out.Instances {
		in := &out.Instances[i]
		n := &instanceNet{public: public, groups: groups, subnet: subnet, shutdown: form.Get("InstanceInitiatedShutdownBehavior"), itype: form.Get("InstanceType")}
		if n.shutdown == "" {
			n.shutdown = "stop" // EC2's default
		}
		if public {
			s.newAutoIP(in.InstanceID, n)
		}
		s.nets[in.InstanceID] = n
		s.states[in.InstanceID] = "running"
		s.pendingInstances[in.InstanceID] = s.pending
		s.lag.hide(in.InstanceID, s.lagLooks)
		// RunInstances answers before the instance runs or has an address.
		in.State.Code, in.State.Name = 0, "pending"
		in.IPAddress, in.DNSName = "", ""
	}
	s.mu.Unlock()
	if token != "" {
		var ids []string
		for _, in := range out.Instances {
			ids = append(ids, in.InstanceID)
		}
		s.mu.Lock()
		s.runTokens[token] = ids
		s.mu.Unlock()
	}
	out.Xmlns = ec2NS
	return out, nil
}

func cloneForm(f url.Values) url.Values {
	out := url.Values{}
	for k, v := range f {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// instances asks kumo for instances (InstanceId.N from form) and adds their
// tags and addresses. It is the model's own view: no consistency window.
func (s *Model) instances(ctx context.Context, form url.Values) ([]xmlInstance, error) {
	f := url.Values{"Action": {"DescribeInstances"}}
	for i, id := range list(form, "InstanceId") {
		f.Set(fmt.Sprintf("InstanceId.%d", i+1), id)
	}
	resp := s.ec2Call(ctx, f)
	if resp.status != http.StatusOK {
		return nil, fmt.Errorf("kumo DescribeInstances: HTTP %d: %s", resp.status, resp.body)
	}
	var out describeInstancesResponse
	if err := xml.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("decoding kumo's DescribeInstances: %w", err)
	}
	tagResp := s.ec2Call(ctx, url.Values{"Action": {"DescribeTags"}})
	var tags describeTagsResponse
	if err := xml.Unmarshal(tagResp.body, &tags); err != nil {
		return nil, fmt.Errorf("decoding kumo's DescribeTags: %w", err)
	}
	byID := map[string][]Tag{}
	for _, t := range tags.Tags {
		byID[t.ResourceID] = append(byID[t.ResourceID], Tag{Key: t.Key, Value: t.Value})
	}
	var insts []xmlInstance
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			in.TagSet = toXMLTags(byID[in.InstanceID])
			in.reservation = res.ReservationID
			if _, ours := s.nets[in.InstanceID]; ours {
				s.states[in.InstanceID] = in.State.Name
			}
			in.IPAddress = s.publicAddress(in.InstanceID)
			in.DNSName = PublicDNSName(in.IPAddress)
			insts = append(insts, in)
		}
	}
	return insts, nil
}

func (s *Model) describeInstances(ctx context.Context, form url.Values) (any, *ec2Err) {
	insts, err := s.instances(ctx, form)
	if err != nil {
		return nil, &ec2Err{code: "InternalError", msg: "awsmodel: " + err.Error(), status: 500}
	}
	ids := list(form, "InstanceId")
	f := filters(form)
	byRes := map[string]*xmlReservation{}
	var order []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if !s.lag.visible(id) {
			return nil, badRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	for _, in := range insts {
		if left := s.pendingInstances[in.InstanceID]; left > 0 && in.State.Name == "running" {
			s.pendingInstances[in.InstanceID] = left - 1
			in.State.Code, in.State.Name = 0, "pending"
		}
		ok, ferr := matchAll(f, fromXMLTags(in.TagSet), map[string]string{
			"instance-id": in.InstanceID, "instance-state-name": in.State.Name,
			"image-id": in.ImageID, "instance-type": in.InstanceType,
		})
		if ferr != nil {
			return nil, ferr
		}
		if !ok {
			continue
		}
		if len(ids) == 0 && !s.lag.visible(in.InstanceID) {
			continue
		}
		res, seen := byRes[in.reservation]
		if !seen {
			res = &xmlReservation{ReservationID: in.reservation, OwnerID: AccountID}
			byRes[in.reservation] = res
			order = append(order, in.reservation)
		}
		res.Instances = append(res.Instances, in)
	}
	out := describeInstancesResponse{Xmlns: ec2NS, RequestID: NewRequestID()}
	for _, id := range order {
		out.Reservations = append(out.Reservations, *byRes[id])
	}
	return out, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// --- XML shapes (EC2 2016-11-15) ---------------------------------------------

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func toXMLTags(tags []Tag) []xmlTag {
	out := make([]xmlTag, 0, len(tags))
	for _, t := range tags {
		out = append(out, xmlTag(t))
	}
	return out
}

func fromXMLTags(tags []xmlTag) []Tag {
	out := make([]Tag, 0, len(tags))
	for _, t := range tags {
		out = append(out, Tag(t))
	}
	return out
}

type returnResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Return    bool   `xml:"return"`
}

type registerImageResponse struct {
	XMLName   xml.Name `xml:"RegisterImageResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	RequestID string   `xml:"requestId"`
	ImageID   string   `xml:"imageId"`
}

type describeImagesResponse struct {
	XMLName   xml.Name   `xml:"DescribeImagesResponse"`
	Xmlns     string     `xml:"xmlns,attr"`
	RequestID string     `xml:"requestId"`
	Images    []xmlImage `xml:"imagesSet>item"`
}

type xmlImage struct {
	ImageID            string       `xml:"imageId"`
	ImageState         string       `xml:"imageState"`
	ImageOwnerID       string       `xml:"imageOwnerId"`
	CreationDate       string       `xml:"creationDate"`
	IsPublic           bool         `xml:"isPublic"`
	Architecture       string       `xml:"architecture"`
	ImageType          string       `xml:"imageType"`
	KernelID           string       `xml:"kernelId,omitempty"`
	Name               string       `xml:"name"`
	Description        string       `xml:"description,omitempty"`
	RootDeviceType     string       `xml:"rootDeviceType"`
	RootDeviceName     string       `xml:"rootDeviceName"`
	BlockDeviceMapping []xmlBDM     `xml:"blockDeviceMapping>item"`
	VirtualizationType string       `xml:"virtualizationType"`
	TagSet             []xmlTag     `xml:"tagSet>item"`
	EnaSupport         bool         `xml:"enaSupport"`
	BootMode           string       `xml:"bootMode,omitempty"`
	ImdsSupport        string       `xml:"imdsSupport,omitempty"`
	StateReason        *stateReason `xml:"stateReason,omitempty"`
}

type stateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlBDM struct {
	DeviceName string `xml:"deviceName"`
	Ebs        struct {
		SnapshotID          string `xml:"snapshotId"`
		VolumeSize          int64  `xml:"volumeSize"`
		DeleteOnTermination bool   `xml:"deleteOnTermination"`
		VolumeType          string `xml:"volumeType"`
	} `xml:"ebs"`
}

func (img *Image) xml() xmlImage {
	x := xmlImage{
		ImageID: img.ID, ImageState: img.State, ImageOwnerID: AccountID,
		CreationDate: img.Created.Format("2006-01-02T15:04:05.000Z"), Architecture: img.Architecture,
		ImageType: "machine", KernelID: img.KernelID, Name: img.Name, Description: img.Description,
		RootDeviceType: "ebs", RootDeviceName: img.RootDeviceName, VirtualizationType: img.VirtualizationType,
		TagSet: toXMLTags(img.Tags), EnaSupport: img.EnaSupport, BootMode: img.BootMode, ImdsSupport: img.ImdsSupport,
	}
	var b xmlBDM
	b.DeviceName = img.RootDeviceName
	b.Ebs.SnapshotID, b.Ebs.VolumeSize, b.Ebs.DeleteOnTermination, b.Ebs.VolumeType = img.SnapshotID, img.VolumeSize, img.DeleteOnTermination, img.VolumeType
	x.BlockDeviceMapping = []xmlBDM{b}
	return x
}

type describeSnapshotsResponse struct {
	XMLName   xml.Name      `xml:"DescribeSnapshotsResponse"`
	Xmlns     string        `xml:"xmlns,attr"`
	RequestID string        `xml:"requestId"`
	Snapshots []xmlSnapshot `xml:"snapshotSet>item"`
}

type xmlSnapshot struct {
	SnapshotID    string   `xml:"snapshotId"`
	VolumeID      string   `xml:"volumeId"`
	Status        string   `xml:"status"`
	StatusMessage string   `xml:"statusMessage,omitempty"`
	StartTime     string   `xml:"startTime"`
	Progress      string   `xml:"progress"`
	OwnerID       string   `xml:"ownerId"`
	VolumeSize    int64    `xml:"volumeSize"`
	Description   string   `xml:"description,omitempty"`
	Encrypted     bool     `xml:"encrypted"`
	TagSet        []xmlTag `xml:"tagSet>item"`
}

type consoleOutputResponse struct {
	XMLName    xml.Name `xml:"GetConsoleOutputResponse"`
	Xmlns      string   `xml:"xmlns,attr"`
	RequestID  string   `xml:"requestId"`
	InstanceID string   `xml:"instanceId"`
	Timestamp  string   `xml:"timestamp"`
	Output     string   `xml:"output,omitempty"`
}

// The instance shapes mirror kumo's (internal/service/ec2/types.go
// XMLInstance) field for field, plus tagSet, so nothing kumo says is lost.
type runInstancesResponse struct {
	XMLName       xml.Name      `xml:"RunInstancesResponse"`
	Xmlns         string        `xml:"xmlns,attr"`
	RequestID     string        `xml:"requestId"`
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type describeInstancesResponse struct {
	XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []xmlReservation `xml:"reservationSet>item"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlInstance struct {
	InstanceID   string `xml:"instanceId"`
	ImageID      string `xml:"imageId"`
	InstanceType string `xml:"instanceType"`
	State        struct {
		Code int    `xml:"code"`
		Name string `xml:"name"`
	} `xml:"instanceState"`
	PrivateIPAddress string `xml:"privateIpAddress,omitempty"`
	IPAddress        string `xml:"ipAddress,omitempty"`
	DNSName          string `xml:"dnsName,omitempty"`
	KeyName          string `xml:"keyName,omitempty"`
	LaunchTime       string `xml:"launchTime"`
	GroupSet         []struct {
		GroupID   string `xml:"groupId"`
		GroupName string `xml:"groupName"`
	} `xml:"groupSet>item"`
	TagSet      []xmlTag `xml:"tagSet>item"`
	reservation string
}

type describeTagsResponse struct {
	Tags []struct {
		ResourceID string `xml:"resourceId"`
		Key        string `xml:"key"`
		Value      string `xml:"value"`
	} `xml:"tagSet>item"`
}
