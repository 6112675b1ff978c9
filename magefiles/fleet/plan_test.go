package fleet_test

import (
	"slices"
	"testing"
	"time"

	"github.com/unikernel-blog/blog/magefiles/fleet"
)

func amis(ids ...string) []fleet.AMI {
	var out []fleet.AMI
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range ids {
		out = append(out, fleet.AMI{ID: id, State: "available", Created: t0.Add(time.Duration(i) * time.Hour), ImageDigest: "sha-" + id, BuildID: "b-" + id, SnapshotIDs: []string{"snap-" + id}})
	}
	return out
}

func ids[T any](xs []T, id func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, id(x))
	}
	slices.Sort(out)
	return out
}

func amiID(a fleet.AMI) string           { return a.ID }
func instanceID(i fleet.Instance) string { return i.ID }

func at(h int) time.Time { return time.Date(2026, 1, 2, h, 0, 0, 0, time.UTC) }

func TestRollbackTargetIsTheLastBuildThatWasLive(t *testing.T) {
	a := amis("a1", "a2", "a3", "a4")
	// a1 live 1h–3h, a2 never live (failed its gate), a3 live 3h–5h, a4 live since 5h.
	a[0].LiveSince, a[0].LiveUntil = at(1), at(3)
	a[1].GateFailed = true
	a[2].LiveSince, a[2].LiveUntil = at(3), at(5)
	a[3].LiveSince = at(5)
	live := &fleet.Instance{ID: "i-4", ImageID: "a4", ImageDigest: "sha-a4"}
	if got, ok := fleet.RollbackTarget(a, live); !ok || got.ID != "a3" {
		t.Fatalf("rollback from a4 = %v %v, want a3 (live most recently before)", got.ID, ok)
	}
	// Rolled back to a1 (live again since 6h; a4 live until 6h): a4 next, never a2.
	a[0].LiveSince = at(6)
	a[3].LiveUntil = at(6)
	live = &fleet.Instance{ID: "i-1", ImageID: "a1", ImageDigest: "sha-a1"}
	if got, ok := fleet.RollbackTarget(a, live); !ok || got.ID != "a4" {
		t.Fatalf("rollback from a1 = %v %v, want a4", got.ID, ok)
	}
	// A build that failed its gate is never a target, even one live once.
	a[3].GateFailed = true
	if got, _ := fleet.RollbackTarget(a, live); got.ID != "a3" {
		t.Fatalf("rollback skipping a failed build = %v, want a3", got.ID)
	}
	// A rebake of the live image is not an earlier build.
	a[2].ImageDigest = "sha-a1"
	if _, ok := fleet.RollbackTarget(a, live); ok {
		t.Fatal("only a rebake of the live image was live before: nothing to roll back to")
	}
	// Nothing was ever live before: nothing to roll back to.
	if _, ok := fleet.RollbackTarget(amis("b1", "b2"), &fleet.Instance{ImageID: "b2", ImageDigest: "sha-b2"}); ok {
		t.Fatal("builds that never went live are no rollback target")
	}
}

func TestMakePlan(t *testing.T) {
	a := amis("a1", "a2", "a3", "a4", "a5", "a6")
	a[3].GateFailed = true // a4 failed its gate
	now := at(12)
	live := fleet.Instance{ID: "i-live", ImageID: "a3", Role: fleet.RoleLive, State: "running"}
	st := &fleet.State{
		Address: &fleet.Address{AllocationID: "eipalloc-1", PublicIP: "203.0.113.1", InstanceID: "i-live"},
		Record:  fleet.Record{Type: "A", Target: "203.0.113.1"},
		Live:    &live, LiveAMI: &a[2], Rollback: &a[1], AMIs: a, Now: now,
		Instances: []fleet.Instance{
			live,
			{ID: "i-cand", ImageID: "a6", Role: fleet.RoleCandidate, State: "running"},
			{ID: "i-drain", ImageID: "a1", Role: fleet.RoleDraining, State: "running", RetireAfter: now.Add(-time.Minute)},
			{ID: "i-grace", ImageID: "a5", Role: fleet.RoleDraining, State: "running", RetireAfter: now.Add(time.Minute)},
		},
	}
	st.Snapshots = []fleet.Snapshot{{ID: "snap-a1", State: "completed"}, {ID: "snap-x", State: "completed"}, {ID: "snap-y", State: "pending"}, {ID: "snap-z", State: "error"}}
	p := fleet.MakePlan(st, 1)
	// Orphans whose upload ended go; one still uploading may be a bake in progress.
	if got, want := ids(p.DeleteSnapshots, func(s fleet.Snapshot) string { return s.ID }), []string{"snap-x", "snap-z"}; !slices.Equal(got, want) {
		t.Errorf("delete snapshots %v, want %v", got, want)
	}
	// Kept: the live one (a3), the rollback target (a2), the one an
	// instance in its grace runs (a5), and besides those the newest one
	// that passed its gate (a6: keep_images counts only the others).
	if got, want := ids(p.Keep, amiID), []string{"a2", "a3", "a5", "a6"}; !slices.Equal(got, want) {
		t.Errorf("keep %v, want %v", got, want)
	}
	// keep_images 2: one more other, a1 (a4 failed its gate and never counts).
	if got, want := ids(fleet.MakePlan(st, 2).Keep, amiID), []string{"a1", "a2", "a3", "a5", "a6"}; !slices.Equal(got, want) {
		t.Errorf("keep_images 2: keep %v, want %v (live, rollback target, in its grace, and two others)", got, want)
	}
	// Deregistered: the build that failed its gate first, then the old one.
	if got := p.Deregister; len(got) != 2 || got[0].ID != "a4" || got[1].ID != "a1" {
		t.Errorf("deregister %v, want [a4 a1] (the failed build first)", ids(got, amiID))
	}
	// Terminated: the candidate nothing sends readers to, the instance whose
	// grace ended; the one in its grace stays.
	if got, want := ids(p.Terminate, instanceID), []string{"i-cand", "i-drain"}; !slices.Equal(got, want) {
		t.Errorf("terminate %v, want %v", got, want)
	}
	if p.KeepWhy["a3"] != "live" || p.KeepWhy["a2"] != "rollback target" {
		t.Errorf("reasons %v", p.KeepWhy)
	}
	// Holding the lease, a pending orphan is a bake that died: it goes too.
	st.Exclusive = true
	if got, want := ids(fleet.MakePlan(st, 1).DeleteSnapshots, func(s fleet.Snapshot) string { return s.ID }), []string{"snap-x", "snap-y", "snap-z"}; !slices.Equal(got, want) {
		t.Errorf("exclusive: delete snapshots %v, want %v", got, want)
	}

	// A site the DNS-swap version deployed: the record points at the
	// instance itself, which is served, so kept, with its AMI.
	legacy := fleet.Instance{ID: "i-old", ImageID: "a1", Role: fleet.RoleLive, State: "running", PublicIP: "198.18.0.9"}
	st = &fleet.State{Record: fleet.Record{Type: "A", Target: "198.18.0.9"}, AMIs: a, Now: now,
		Instances: []fleet.Instance{legacy, {ID: "i-c", ImageID: "a2", Role: fleet.RoleCandidate, State: "pending"}}}
	p = fleet.MakePlan(st, 1)
	if got, want := ids(p.Keep, amiID), []string{"a1", "a6"}; !slices.Equal(got, want) {
		t.Errorf("legacy record: keep %v, want %v", got, want)
	}
	if got := ids(p.Terminate, instanceID); !slices.Equal(got, []string{"i-c"}) {
		t.Errorf("legacy record: terminate %v, want [i-c]", got)
	}
	if (fleet.Plan{}).Empty() != true || p.Empty() {
		t.Error("Empty")
	}
}

func TestChooseAddressIsTheSameEveryTime(t *testing.T) {
	addrs := []fleet.Address{{AllocationID: "eipalloc-1", PublicIP: "203.0.113.1"}, {AllocationID: "eipalloc-2", PublicIP: "203.0.113.2", InstanceID: "i-2"}, {AllocationID: "eipalloc-3", PublicIP: "203.0.113.3"}}
	for _, tc := range []struct {
		record, want string
	}{{"203.0.113.3", "eipalloc-3"}, {"", "eipalloc-2"}, {"198.18.0.1", "eipalloc-2"}} {
		keep, extra := fleet.ChooseAddress(addrs, tc.record)
		if keep.AllocationID != tc.want || len(extra) != 2 || slices.ContainsFunc(extra, func(a fleet.Address) bool { return a.AllocationID == tc.want }) {
			t.Errorf("record %q: keep %s, extra %v; want %s kept", tc.record, keep.AllocationID, extra, tc.want)
		}
	}
	if keep, _ := fleet.ChooseAddress(addrs[:1:1], ""); keep.AllocationID != "eipalloc-1" {
		t.Errorf("one address: %v", keep)
	}
	if keep, extra := fleet.ChooseAddress(nil, ""); keep.AllocationID != "" || extra != nil {
		t.Error("no address")
	}
}
