package awsmodel

// Elastic IP addresses and the public IPv4 addresses of instances. kumo
// v0.33.1 has no Elastic IP call at all (internal/service/ec2/handlers.go
// getActionHandler lists none of AllocateAddress, DescribeAddresses,
// AssociateAddress, DisassociateAddress, ReleaseAddress) and never gives an
// instance a public address. The model does, as EC2 documents:
//
//   - AllocateAddress takes no client token (it is not among the actions that
//     take one in "Ensuring idempotency in Amazon EC2 API requests",
//     https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html):
//     a repeated call allocates another address. Tags come from
//     TagSpecification (resource type elastic-ip). At most
//     MaxAddresses addresses per region: AddressLimitExceeded beyond
//     ("By default, you can allocate 5 Elastic IP addresses ... per Region",
//     EC2 API Reference, AllocateAddress:
//     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AllocateAddress.html).
//   - AssociateAddress is idempotent by default (same page on idempotency);
//     it moves an address associated elsewhere only with AllowReassociation
//     true: the API reference says reassociation is automatic, older SDK
//     references that "if the Elastic IP address is associated, and this
//     option is not specified, the operation will fail"; the model takes the
//     stricter (Resource.AlreadyAssociated). It replaces an address the
//     instance already has. The instance's own public IPv4 address is
//     released; when the Elastic IP later leaves it, an instance launched
//     with a public address gets a new one, not the old. EC2 API Reference,
//     AssociateAddress:
//     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AssociateAddress.html;
//     EC2 User Guide, "Elastic IP addresses" and "Public IPv4 addresses".
//   - DisassociateAddress is idempotent: repeating it for an association that
//     ended is no error; an association id never issued is
//     InvalidAssociationID.NotFound.
//     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DisassociateAddress.html
//   - ReleaseAddress of an associated address fails with
//     InvalidIPAddress.InUse (the nondefault-VPC rule, the stricter of the
//     two the page gives); an unknown allocation id is
//     InvalidAllocationID.NotFound.
//     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ReleaseAddress.html
//   - A terminated instance's Elastic IP stays allocated, unassociated.
//   - An instance has a public IPv4 address only where it was asked for
//     (NetworkInterface AssociatePublicIpAddress) or the subnet maps one:
//     a default subnet does, other subnets only with MapPublicIpOnLaunch
//     (EC2 API Reference, InstanceNetworkInterfaceSpecification: "If
//     launching into a default subnet, the default value is true").
//     A request with both NetworkInterface and instance-level security groups
//     or subnet is InvalidParameterCombination (RunInstances).
//   - A stopped instance releases its public IPv4 address; its Elastic IP
//     stays associated (EC2 User Guide, "Stop and start Amazon EC2
//     instances").

import (
	"context"
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// MaxAddresses is EC2's default Elastic IP quota per region.
const MaxAddresses = 5

// Address is an Elastic IP the model holds.
type Address struct {
	AllocationID  string
	PublicIP      string
	AssociationID string // "" when not associated
	InstanceID    string
	Tags          []Tag
}

// instanceNet is what the model knows of an instance's network: what
// kumo does not keep.
type instanceNet struct {
	public     bool   // launched with a public IPv4 address
	autoIP     string // its current public IPv4 address, "" when released
	generation int    // how many public addresses it has had
	eip        string // the allocation id of its Elastic IP
	groups     []string
	subnet     string
	shutdown   string // InstanceInitiatedShutdownBehavior
	itype      string
}

func (s *Model) newAutoIP(id string, n *instanceNet) {
	n.generation++
	key := id
	if n.generation > 1 {
		key = fmt.Sprintf("%s#%d", id, n.generation)
	}
	n.autoIP = PublicIP(key)
}

// publicAddress is what DescribeInstances shows: the Elastic IP, else the
// instance's own public address, else none. s.mu is held.
func (s *Model) publicAddress(id string) string {
	n, ok := s.nets[id]
	if !ok {
		return ""
	}
	if n.eip != "" {
		if a, ok := s.addresses[n.eip]; ok {
			return a.PublicIP
		}
	}
	return n.autoIP
}

// dropAddress takes the Elastic IP off an instance. s.mu is held.
func (s *Model) dropAddress(id string, running bool) {
	n, ok := s.nets[id]
	if !ok || n.eip == "" {
		return
	}
	if a, ok := s.addresses[n.eip]; ok && a.InstanceID == id {
		a.InstanceID, a.AssociationID = "", ""
	}
	n.eip = ""
	if running && n.public {
		s.newAutoIP(id, n)
	}
}

func (s *Model) allocateAddress(form url.Values) (any, *ec2Err) {
	// Domain: vpc, the only one since EC2-Classic's retirement
	// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AllocateAddress.html).
	if d := form.Get("Domain"); d != "" && d != "vpc" {
		return nil, badRequest("InvalidParameterValue", "Domain must be vpc; EC2-Classic is retired")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.addresses) >= MaxAddresses {
		return nil, badRequest("AddressLimitExceeded", "The maximum number of addresses has been reached.")
	}
	s.addressSeq++
	a := &Address{AllocationID: newID("eipalloc"), PublicIP: fmt.Sprintf("203.0.113.%d", s.addressSeq%250+1), Tags: tagSpecs(form, "elastic-ip")}
	s.addresses[a.AllocationID] = a
	s.lag.hide(a.AllocationID, s.lagLooks)
	return allocateAddressResponse{Xmlns: ec2NS, RequestID: NewRequestID(), PublicIP: a.PublicIP, Domain: "vpc", AllocationID: a.AllocationID, Pool: "amazon", BorderGroup: "us-east-1"}, nil
}

func (s *Model) describeAddresses(form url.Values) (any, *ec2Err) {
	ids := list(form, "AllocationId")
	ips := list(form, "PublicIp")
	f := filters(form)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.addresses[id]; !ok || !s.lag.visible(id) {
			return nil, badRequest("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", id)
		}
	}
	allocs := make([]string, 0, len(s.addresses))
	for id := range s.addresses {
		allocs = append(allocs, id)
	}
	sort.Strings(allocs)
	var items []xmlAddress
	for _, id := range allocs {
		a := s.addresses[id]
		if len(ids) > 0 && !contains(ids, id) || len(ips) > 0 && !contains(ips, a.PublicIP) {
			continue
		}
		ok, err := matchAll(f, a.Tags, map[string]string{
			"allocation-id": a.AllocationID, "association-id": a.AssociationID, "domain": "vpc",
			"instance-id": a.InstanceID, "public-ip": a.PublicIP, "network-border-group": "us-east-1",
		})
		if err != nil {
			return nil, err
		}
		if !ok || len(ids) == 0 && !s.lag.visible(id) {
			continue
		}
		items = append(items, xmlAddress{PublicIP: a.PublicIP, AllocationID: a.AllocationID, Domain: "vpc", InstanceID: a.InstanceID,
			AssociationID: a.AssociationID, TagSet: toXMLTags(a.Tags), Pool: "amazon", BorderGroup: "us-east-1"})
	}
	return describeAddressesResponse{Xmlns: ec2NS, RequestID: NewRequestID(), Addresses: items}, nil
}

func (s *Model) associateAddress(ctx context.Context, form url.Values) (any, *ec2Err) {
	alloc, id := form.Get("AllocationId"), form.Get("InstanceId")
	switch {
	case alloc == "":
		return nil, badRequest("MissingParameter", "The request must contain the parameter AllocationId")
	case id == "":
		return nil, badRequest("MissingParameter", "The request must contain the parameter InstanceId or NetworkInterfaceId")
	}
	state, _, found, err := s.InstanceState(ctx, id)
	if err != nil {
		return nil, &ec2Err{code: "InternalError", msg: "awsmodel: " + err.Error(), status: 500}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.addresses[alloc]
	switch {
	case !ok:
		return nil, badRequest("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", alloc)
	case !found:
		return nil, badRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	// Only a running or stopped instance takes an address
	// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AssociateAddress.html).
	case state != "running" && state != "stopped" || s.pendingInstances[id] > 0:
		return nil, badRequest("IncorrectInstanceState", "The instance '%s' is not in a valid state for this operation.", id)
	case a.InstanceID != "" && a.InstanceID != id && form.Get("AllowReassociation") != "true":
		return nil, badRequest("Resource.AlreadyAssociated", "resource %s is already associated with associate-id %s", alloc, a.AssociationID)
	}
	if a.InstanceID != "" && a.InstanceID != id {
		s.dropAddress(a.InstanceID, s.states[a.InstanceID] == "running")
	}
	n := s.nets[id]
	if n == nil {
		n = &instanceNet{}
		s.nets[id] = n
	}
	if n.eip != "" && n.eip != alloc {
		if other := s.addresses[n.eip]; other != nil {
			other.InstanceID, other.AssociationID = "", ""
		}
	}
	n.eip, n.autoIP = alloc, "" // the instance's own public address is released
	a.InstanceID, a.AssociationID = id, newID("eipassoc")
	s.associations[a.AssociationID] = alloc
	return associateAddressResponse{Xmlns: ec2NS, RequestID: NewRequestID(), Return: true, AssociationID: a.AssociationID}, nil
}

func (s *Model) disassociateAddress(form url.Values) (any, *ec2Err) {
	assoc := form.Get("AssociationId")
	if assoc == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter AssociationId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	alloc, ok := s.associations[assoc]
	if !ok {
		return nil, badRequest("InvalidAssociationID.NotFound", "The association ID '%s' does not exist", assoc)
	}
	if a := s.addresses[alloc]; a != nil && a.AssociationID == assoc {
		s.dropAddress(a.InstanceID, s.states[a.InstanceID] == "running")
	}
	return returnResponse{XMLName: xml.Name{Local: "DisassociateAddressResponse"}, Xmlns: ec2NS, RequestID: NewRequestID(), Return: true}, nil
}

func (s *Model) releaseAddress(form url.Values) (any, *ec2Err) {
	alloc := form.Get("AllocationId")
	if alloc == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter AllocationId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.addresses[alloc]
	switch {
	case !ok:
		return nil, badRequest("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", alloc)
	case a.AssociationID != "":
		return nil, badRequest("InvalidIPAddress.InUse", "Address %s is in use by %s.", a.PublicIP, a.InstanceID)
	}
	delete(s.addresses, alloc)
	return returnResponse{XMLName: xml.Name{Local: "ReleaseAddressResponse"}, Xmlns: ec2NS, RequestID: NewRequestID(), Return: true}, nil
}

// --- helpers for tests ----------------------------------------------------

// AddressesTagged lists the Elastic IPs that carry tag key=value.
func (s *Model) AddressesTagged(key, value string) []Address {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Address
	for _, a := range s.addresses {
		if hasTag(a.Tags, key, value) {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AllocationID < out[j].AllocationID })
	return out
}

// AddressOf is the Elastic IP with public address ip.
func (s *Model) AddressOf(ip string) (Address, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.addresses {
		if a.PublicIP == ip {
			return *a, true
		}
	}
	return Address{}, false
}

// InstanceAddress is the public IPv4 address an instance answers on, as a
// reader reaches it: its Elastic IP, else its own public address; "" when
// it has none.
func (s *Model) InstanceAddress(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publicAddress(id)
}

// InstanceOwning is the instance that answers on public address ip, "" when none.
func (s *Model) InstanceOwning(ip string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.nets {
		if s.publicAddress(id) == ip {
			return id
		}
	}
	return ""
}

// ShutdownBehavior is the InstanceInitiatedShutdownBehavior the instance was launched with.
func (s *Model) ShutdownBehavior(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nets[id]; ok {
		return n.shutdown
	}
	return ""
}

// Halt is the instance's kernel shutting itself down: with shutdown
// behaviour stop the instance stops (and keeps its Elastic IP), with
// terminate it is terminated (and loses it).
func (s *Model) Halt(ctx context.Context, id string) error {
	s.mu.Lock()
	behaviour := "stop"
	if n, ok := s.nets[id]; ok && n.shutdown != "" {
		behaviour = n.shutdown
	}
	s.mu.Unlock()
	action := "StopInstances"
	if behaviour == "terminate" {
		action = "TerminateInstances"
	}
	if resp := s.ec2Call(ctx, url.Values{"Action": {action}, "InstanceId.1": {id}}); resp.status != http.StatusOK {
		return fmt.Errorf("kumo %s: %s", action, resp.body)
	}
	s.afterStateChange(action, []string{id})
	return nil
}

// afterStateChange applies what EC2 does to addresses when instances stop
// or terminate: a stopped instance keeps its Elastic IP and loses its
// auto-assigned public address, a terminated one loses both
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Stop_Start.html,
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-instance-addressing.html).
// Kinder than AWS in one way: the change is immediate, where AWS passes
// through shutting-down/stopping first (and keeps the address meanwhile).
func (s *Model) afterStateChange(action string, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		n, ok := s.nets[id]
		switch {
		case !ok:
		case action == "TerminateInstances":
			s.states[id] = "terminated"
			s.dropAddress(id, false)
			n.autoIP = ""
		case action == "StopInstances":
			s.states[id] = "stopped"
			n.autoIP = "" // the Elastic IP stays
		}
	}
}

// PublicIP is the public IPv4 address the model gives an instance (or its
// later addresses, key "id#n"): in 198.18.0.0/15, RFC 2544's benchmarking
// range, never routed.
func PublicIP(key string) string {
	sum := sha256.Sum256([]byte(key))
	return fmt.Sprintf("198.%d.%d.%d", 18+int(sum[0]&1), sum[1], 1+int(sum[2])%254)
}

// PublicDNSName is EC2's public name for a public IPv4 address in us-east-1.
func PublicDNSName(ip string) string {
	if ip == "" {
		return ""
	}
	return "ec2-" + strings.ReplaceAll(ip, ".", "-") + ".compute-1.amazonaws.com"
}

// --- XML shapes -------------------------------------------------------------

type allocateAddressResponse struct {
	XMLName      xml.Name `xml:"AllocateAddressResponse"`
	Xmlns        string   `xml:"xmlns,attr"`
	RequestID    string   `xml:"requestId"`
	PublicIP     string   `xml:"publicIp"`
	Domain       string   `xml:"domain"`
	AllocationID string   `xml:"allocationId"`
	Pool         string   `xml:"publicIpv4Pool"`
	BorderGroup  string   `xml:"networkBorderGroup"`
}

type describeAddressesResponse struct {
	XMLName   xml.Name     `xml:"DescribeAddressesResponse"`
	Xmlns     string       `xml:"xmlns,attr"`
	RequestID string       `xml:"requestId"`
	Addresses []xmlAddress `xml:"addressesSet>item"`
}

type xmlAddress struct {
	PublicIP      string   `xml:"publicIp"`
	AllocationID  string   `xml:"allocationId"`
	Domain        string   `xml:"domain"`
	InstanceID    string   `xml:"instanceId,omitempty"`
	AssociationID string   `xml:"associationId,omitempty"`
	TagSet        []xmlTag `xml:"tagSet>item"`
	Pool          string   `xml:"publicIpv4Pool"`
	BorderGroup   string   `xml:"networkBorderGroup"`
}

type associateAddressResponse struct {
	XMLName       xml.Name `xml:"AssociateAddressResponse"`
	Xmlns         string   `xml:"xmlns,attr"`
	RequestID     string   `xml:"requestId"`
	Return        bool     `xml:"return"`
	AssociationID string   `xml:"associationId"`
}
