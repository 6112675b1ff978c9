package fleet

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// The site's Elastic IP is where readers go: the DNS record holds it, and
// Swap moves it to the healthy candidate. It is allocated once, tagged with
// the site, and kept until `mage destroy`.

// Address is one of the site's Elastic IPs.
type Address struct {
	AllocationID  string
	PublicIP      string
	AssociationID string // "" when not associated
	InstanceID    string // the instance it sends readers to; "" when none
}

// AddressAPI is what reading the site's addresses needs; *ec2.Client has it.
type AddressAPI interface {
	DescribeAddresses(context.Context, *ec2.DescribeAddressesInput, ...func(*ec2.Options)) (*ec2.DescribeAddressesOutput, error)
}

// SiteAddresses lists the site's Elastic IPs, by allocation id.
func SiteAddresses(ctx context.Context, api AddressAPI, site string) ([]Address, error) {
	out, err := api.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + TagSite), Values: []string{site}}},
	})
	if err != nil {
		return nil, fmt.Errorf("listing the Elastic IPs of site %s: %w; check the ec2:DescribeAddresses permission and the region", site, err)
	}
	var addrs []Address
	for _, a := range out.Addresses {
		if tagValues(a.Tags)[TagSite] != site {
			continue // a filter the endpoint ignored must not hand back another site's address
		}
		addrs = append(addrs, Address{
			AllocationID: aws.ToString(a.AllocationId), PublicIP: aws.ToString(a.PublicIp),
			AssociationID: aws.ToString(a.AssociationId), InstanceID: aws.ToString(a.InstanceId),
		})
	}
	slices.SortFunc(addrs, func(a, b Address) int { return cmpString(a.AllocationID, b.AllocationID) })
	return addrs, nil
}

// ChooseAddress picks the site's address among several (a retried
// AllocateAddress whose first answer was lost made a twin): the one the
// record holds, else one that is associated, else the lowest allocation id,
// so every run picks the same. The rest are extras to release.
func ChooseAddress(addrs []Address, recordIP string) (keep Address, extra []Address) {
	if len(addrs) == 0 {
		return Address{}, nil
	}
	best := 0
	rank := func(a Address) int {
		switch {
		case recordIP != "" && a.PublicIP == recordIP:
			return 2
		case a.InstanceID != "":
			return 1
		}
		return 0
	}
	for i, a := range addrs {
		if rank(a) > rank(addrs[best]) {
			best = i
		}
	}
	for i, a := range addrs {
		if i != best {
			extra = append(extra, a)
		}
	}
	return addrs[best], extra
}

// AllocateAddressInput is the request that allocates the site's address,
// tagged at creation; preflight's DryRun probe sends the same one.
func AllocateAddressInput(site string) *ec2.AllocateAddressInput {
	return &ec2.AllocateAddressInput{
		Domain: types.DomainTypeVpc,
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeElasticIp,
			Tags:         []types.Tag{Tag("Name", "blog "+site), Tag(TagSite, site)},
		}},
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
