package spt

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Exprs is the nftables expression list of a forward, as `nft` would build
// it for: iifname "ens5" tcp dport 80 dnat to 100.127.255.254:80.
func (f Forward) Exprs() ([]expr.Any, error) {
	if f.Proto != "tcp" {
		return nil, fmt.Errorf("forward %s: only tcp is supported", f)
	}
	if len(f.In) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("forward %s: interface name too long", f)
	}
	if !f.To.Addr().Is4() {
		return nil, fmt.Errorf("forward %s: only IPv4 targets", f)
	}
	ifname := make([]byte, unix.IFNAMSIZ) // NUL-padded, as the kernel compares it
	copy(ifname, f.In)
	addr := f.To.Addr().As4()
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(f.Port))},
		&expr.Immediate{Register: 1, Data: addr[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(f.To.Port())},
		// One address and one port: min and max name the same registers,
		// which is also how the kernel reports the rule back.
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true},
	}, nil
}

// ruleset queues the plan's table, chains and rules on c; Flush sends them in
// one transaction, so the rules appear together or not at all.
func (p Plan) ruleset(c *nftables.Conn) error {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: p.Table}
	// Start from nothing: adding then deleting makes the delete succeed
	// whether or not an earlier run (a restart of the payload) left a table.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	pre := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	// An empty source-NAT chain registers the nat hook on the way out, as
	// `nft` set-ups for DNAT customarily do.
	c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	for _, f := range p.Forwards {
		exprs, err := f.Exprs()
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: exprs})
	}
	return nil
}
